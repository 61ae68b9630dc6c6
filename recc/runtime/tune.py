"""`recc tune-serving`: DeepRecSched's search for the per-request batch size, by measurement.

The objective is DeepRecSys's: the highest arrival rate (queries per second, Poisson, query sizes from the
chosen distribution) at which the tail latency (p95 by default, or p99) stays within the SLA. For one
configuration it is found by measurement (`max_qps`): from a rate estimated from one call's time, the
rate grows (x1.5) while the tail meets the SLA and shrinks while it does not, then a bisection narrows
the bracket (`refine` steps). Latency is not always monotonic in load at low rates: where an idle core
runs slower when woken (frequency ramp-up, cold caches; on the 2-core development VM a call after 50 ms
idle takes ~3x as long as back to back), a light load can miss an SLA that a heavier one meets. So a miss
at the starting rate is followed by one step up before the search turns down. A rate "meets" when every query completed and the tail is within the SLA.
Each measured load lasts `duration_s`, longer at low rates so that it holds at least `min_queries`
queries (a p95 over a handful of queries is noise), but at most `max_duration_s`.

The knob searched is `max_batch`, the rows per call: requests bigger than it are split across the
workers, smaller ones coalesced up to it. Candidates are powers of two from 4 below the largest query
size, and that size (nothing split). The search is a hill climb from 64 (or the candidate nearest it) with a stop rule that does not
stop at the first dip as DeepRecSys's greedy search does: it measures both neighbours, moves to the best
one while that beats the best so far by more than `min_gain` (2%), and in the direction it moves keeps
going one step past a step that did not improve (a dip in a noisy measurement is not a peak). While no
point has met the SLA at any rate (a plateau at zero, no gradient), it keeps going to the ends of the
ladder. It stops when no unmeasured neighbour of the best remains within that patience. Every measured point is kept
(the curve), printed and saved.

The result is a serving config saved next to the artifact (`NAME.serving.json` beside `NAME.recc`):
`recc serve` reads it at start-up for the settings not given on its command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recc.runtime.drive import Deployment, Load, QueryPool, Routed, measure, warm
from recc.runtime.loadgen import git_commit
from recc.runtime.query_sizes import QuerySizes

Say = Callable[[str], None]


@dataclass(frozen=True)
class Objective:
    sla_ms: float = 10.0
    percentile: str = "p95"  # or p99
    duration_s: float = 3.0  # of each measured load (at least min_queries, at most max_duration_s)
    min_queries: int = 200
    max_duration_s: float = 20.0
    refine: int = 3  # bisection steps between the last rate that met the SLA and the first that did not
    max_steps: int = 8  # rate changes (x1.5 or /1.5) before the bracket is found (then the search gives up)
    min_gain: float = 0.02  # the hill climb moves only for more than this relative gain
    seed: int = 0

    def meets(self, result: dict[str, Any]) -> bool:
        latency = result["latency_ms"]
        return (latency is not None and result["errors"] == 0 and result["completed"] == result["queries"]
                and latency[self.percentile] <= self.sla_ms)

    def load(self, qps: float, sizes: QuerySizes, seed: int) -> Load:
        duration = min(max(self.duration_s, self.min_queries / qps), self.max_duration_s)
        return Load(qps, sizes, duration, seed=seed)


def estimate_qps(deployment: Deployment, pool: QueryPool, sizes: QuerySizes) -> float:
    """A starting rate: half of what the slots could sustain if a mean-size query took one call's time."""
    import time

    import numpy as np

    mean_rows = int(max(1, min(pool.rows, round(float(np.mean(sizes.sample(np.random.default_rng(0), 200)))))))
    executor, call = deployment.slots[0]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        executor.submit(call, *pool.query(mean_rows, 0)).result()
        times.append(time.perf_counter() - start)
    return 0.5 * len(deployment.slots) / max(float(np.median(times)), 1e-5)


def max_qps(deployment: Deployment, pool: QueryPool, sizes: QuerySizes, objective: Objective,
            start_qps: float, say: Say = print) -> tuple[float, list[dict[str, Any]]]:
    """The highest measured rate meeting the objective (0.0 if none did) and every trial."""
    trials: list[dict[str, Any]] = []

    def trial(qps: float) -> bool:
        result = measure(deployment, pool, objective.load(qps, sizes, objective.seed + len(trials)))
        ok = objective.meets(result)
        trials.append(dict(result, meets=ok))
        tail = result["latency_ms"][objective.percentile] if result["latency_ms"] else math.inf
        say(f"    max_batch {deployment.max_batch:5d}  {qps:9.1f} qps offered  {result['achieved_qps']:9.1f} achieved  "
            f"{objective.percentile} {tail:8.2f} ms  {'meets' if ok else 'misses'} the SLA")
        return ok

    qps = start_qps
    met = trial(qps)
    if not met and trial(qps * 1.5):  # a miss at the start may be the idle penalty: look one step up first
        qps, met = qps * 1.5, True
    good, bad = (qps, math.inf) if met else (0.0, qps)
    for _ in range(objective.max_steps):  # x1.5 up while meeting, /1.5 down while missing: a bracket
        if good > 0 and bad < math.inf:
            break
        qps = good * 1.5 if met else bad / 1.5
        met = trial(qps)
        good, bad = (max(good, qps), bad) if met else (good, min(bad, qps))
    if good == 0.0 or bad == math.inf:
        return good, trials  # no bracket within max_steps: the best that met, if any
    for _ in range(objective.refine):
        middle = (good + bad) / 2
        if trial(middle):
            good = middle
        else:
            bad = middle
    return good, trials


def candidates(largest_query: int) -> list[int]:
    """max_batch values searched: powers of two from 4 below the largest query size, and that size itself
    (no query is split: whole queries, coalesced)."""
    top = max(4, largest_query)
    return sorted({1 << k for k in range(2, 11) if (1 << k) < top} | {top})


def hill_climb(evaluate: Callable[[int], float], ladder: list[int], start: int, min_gain: float) -> dict[int, float]:
    """Scores of the ladder points visited by the climb described in the module docstring."""
    scores: dict[int, float] = {}

    def score(i: int) -> float:
        if ladder[i] not in scores:
            scores[ladder[i]] = evaluate(ladder[i])
        return scores[ladder[i]]

    best = min(range(len(ladder)), key=lambda i: abs(ladder[i] - start))
    score(best)
    while True:
        moved = False
        for step in (-1, 1):
            # one step past a step that did not improve; on a plateau where nothing met the SLA (no
            # gradient), as far as the ladder goes
            reach = 1
            while 0 <= best + step * reach < len(ladder) and (reach <= 2 or scores[ladder[best]] == 0.0):
                i = best + step * reach
                if score(i) > scores[ladder[best]] * (1 + min_gain):
                    best, moved = i, True
                    break
                reach += 1
            if moved:
                break
        if not moved:
            return scores


def _climb(deployment: Deployment, pool: QueryPool, sizes: QuerySizes, objective: Objective, knob: str,
           set_knob: Callable[[int], None], ladder: list[int], start: int, say: Say) -> tuple[int, float, list[Any]]:
    """Hill-climb one knob over `ladder` (rate searched at each point): the best value, its rate, the curve."""
    start_qps = estimate_qps(deployment, pool, sizes)
    curve: list[dict[str, Any]] = []

    def evaluate(value: int) -> float:
        set_knob(value)
        say(f"  {knob} {value}:")
        best, trials = max_qps(deployment, pool, sizes, objective, start_qps, say)
        curve.append({knob: value, "max_qps": best, "trials": trials})
        say(f"  {knob} {value}: {best:.1f} qps within {objective.percentile} <= {objective.sla_ms:g} ms")
        return best

    scores = hill_climb(evaluate, ladder, start, objective.min_gain)
    best = max(scores, key=lambda v: scores[v])
    return best, scores[best], sorted(curve, key=lambda c: c[knob])


def tune(deployment: Deployment, sizes: QuerySizes, objective: Objective, say: Say = print) -> dict[str, Any]:
    """Search max_batch for `deployment` (coalescing on; splitting too with several slots); the serving
    config and the curve."""
    pool = QueryPool(deployment.model, max(sizes.largest, 64), seed=objective.seed)
    warm(deployment, pool)
    deployment.split, deployment.coalesce = len(deployment.slots) > 1, True

    def set_max_batch(value: int) -> None:
        deployment.max_batch = value

    best, rate, curve = _climb(deployment, pool, sizes, objective, "max_batch", set_max_batch,
                               candidates(sizes.largest), 64, say)
    return {"max_batch": best, "max_qps": rate, "split": deployment.split, "workers": len(deployment.workers),
            "sizes": sizes.spec, "objective": asdict(objective), "curve": curve}


def layouts(cores: int) -> list[tuple[int, int]]:
    """(workers, threads per worker) searched by default: pools of N >= 2 workers x T threads using every
    core (N x T = cores), and (0, cores): calls in the server process with TVM's threads on every core
    (what a pool of one worker would do, without its hop between processes)."""
    return [(n, cores // n) for n in range(cores, 1, -1) if cores % n == 0] + [(0, cores)]


def tune_layouts(make: Callable[[int, int], Deployment], candidates_: list[tuple[int, int]], sizes: QuerySizes,
                 objective: Objective, say: Say = print) -> dict[str, Any]:
    """`tune` each layout (`make(workers, threads)` deploys it); the best one's config, every layout's curve."""
    results = []
    for workers, threads in candidates_:
        say(f"layout: {f'{workers} workers x {threads} threads' if workers else f'in process, {threads} threads'}")
        deployment = make(workers, threads)
        try:
            result = tune(deployment, sizes, objective, say)
        finally:
            deployment.close()
        results.append(dict(result, workers=workers, worker_threads=threads))
    best = max(results, key=lambda r: r["max_qps"])
    return dict(best, layouts=[{k: r[k] for k in ("workers", "worker_threads", "max_batch", "max_qps", "split", "curve")}
                               for r in results])


def tune_threshold(routed: Routed, sizes: QuerySizes, objective: Objective, say: Say = print) -> dict[str, Any]:
    """Search the rows above which a query goes to the large variant (DeepRecSched's offload threshold),
    each variant at its deployment's settings: thresholds on the `candidates` ladder plus the largest
    query size (never offload), by the same hill climb, starting from the middle of the ladder."""
    pool = QueryPool(routed.model, max(sizes.largest, 64), seed=objective.seed)
    warm(routed.small, pool)
    warm(routed.large, pool)
    ladder = sorted(set(candidates(sizes.largest)) | {sizes.largest})

    def set_threshold(value: int) -> None:
        routed.threshold = value

    best, rate, curve = _climb(routed, pool, sizes, objective, "threshold", set_threshold, ladder,
                               ladder[len(ladder) // 2], say)
    return {"variant_threshold": best, "max_qps": rate, "offloads": best < sizes.largest, "threshold_curve": curve}


def config_path(artifact: str | Path) -> Path:
    """Where an artifact's serving config lives: `NAME.serving.json` beside `NAME.recc`."""
    path = Path(artifact)
    return path.parent / (path.name.removesuffix(".recc") + ".serving.json")


def save_config(path: Path, artifact: str | Path, result: dict[str, Any], command: list[str]) -> None:
    content = dict(result, artifact=str(Path(artifact).name), command=command, git=git_commit(), machine=machine())
    path.write_text(json.dumps(content, indent=2) + "\n")


def load_config(artifact: str | Path) -> dict[str, Any] | None:
    """The serving settings saved for an artifact (max_batch, workers, worker_threads, split; variant and
    variant_threshold when tuned with one), or None."""
    path = config_path(artifact)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        settings = {"max_batch": int(saved["max_batch"]), "workers": int(saved["workers"]),
                    "worker_threads": int(saved["worker_threads"]), "split": bool(saved["split"])}
        if saved.get("variant"):
            settings.update(variant=str(path.parent / saved["variant"]), variant_threshold=int(saved["variant_threshold"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a serving config written by `recc tune-serving` ({e}); delete or re-tune it") from None
    if min(settings["max_batch"], settings["worker_threads"]) < 1 or settings["workers"] < 0:
        raise ValueError(f"{path}: max_batch and worker_threads must be >= 1, workers >= 0")
    return settings


def machine() -> dict[str, Any]:
    """The CPU a config was tuned on (a config is only as good as the machine it was measured on)."""
    import os

    from recc.compiler.host import host_features

    model = next((line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), None) if Path("/proc/cpuinfo").exists() else None
    return {"cpu_model": model, "cores_available": len(os.sched_getaffinity(0)), "features": sorted(f for f in host_features() if f.startswith(("avx", "amx")))}


def print_curve(result: dict[str, Any], say: Say = print) -> None:
    objective = result["objective"]
    say(f"layout                   max_batch  max qps with {objective['percentile']} <= {objective['sla_ms']:g} ms")
    for layout in result.get("layouts", [result]):
        name = f"{layout['workers']} x {layout['worker_threads']} threads" if layout["workers"] else "in process"
        for point in layout["curve"]:
            chosen = layout["workers"] == result["workers"] and point["max_batch"] == result["max_batch"]
            say(f"{name:24s} {point['max_batch']:9d}  {point['max_qps']:9.1f}{'  <- chosen' if chosen else ''}")
    for point in result.get("threshold_curve", []):
        chosen = point["threshold"] == result.get("variant_threshold")
        say(f"variant above {point['threshold']:5d} rows   {point['max_qps']:9.1f}{'  <- chosen' if chosen else ''}")
