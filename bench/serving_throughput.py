"""Latency-bounded throughput, side by side in one run: the highest Poisson arrival rate (queries/s) at
which the p95 latency stays within the SLA (DeepRecSys's metric), for

- `eager-static`: eager PyTorch, one query = one call (DeepRecSys's baseline), in its better thread
  policy of two measured: 2 worker processes x 1 thread, and 1 process x 2 intra-op threads;
- `recc-static`: the compiled artifact, one query = one call, the better of the same two policies;
- `recc-sched`: what `recc tune-serving` picks for each SLA: the same two layouts, requests coalesced
  into calls of up to `max_batch` rows and (with 2 workers) split across them, `max_batch` searched.

Load is driven in the benchmark's own process straight into the serving batcher (`recc.runtime.drive`:
open loop, latency from scheduled arrival), so every system pays the same dispatch cost and none pays
HTTP; query sizes follow `--sizes` (default `deeprecsys`: heavy-tailed, up to 1,000 items). The driver
shares the machine's cores with the workers: on a 2-core machine that costs every system alike.

    PYTHONPATH=. python bench/serving_throughput.py --models dlrm-rmc1,din --scale 0.01 --sla-ms 10,20 \\
        --out bench/results/serving/throughput

Results JSON (+ a markdown table, + p95-vs-load plots per model and SLA): the command, git commit,
machine, every trial of every search.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import recc
from recc.bench.machine import describe_machine
from recc.models import create
from recc.runtime.drive import Deployment, QueryPool, artifact_deployment, in_process, pooled, warm
from recc.runtime.protocol import output_arrays
from recc.runtime.query_sizes import parse_sizes
from recc.runtime.tune import Objective, estimate_qps, max_qps, tune_layouts


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _eager_in_process(name: str, eager: torch.nn.Module, compiled: Any, threads: int) -> Deployment:
    torch.set_num_threads(threads)

    def call(*tensors: torch.Tensor) -> list[np.ndarray]:
        with torch.inference_mode():
            return output_arrays(eager(*tensors))

    return Deployment(name, compiled, [(ThreadPoolExecutor(1), call)])


def _systems(model: str, scale: float, art: Path, eager: torch.nn.Module) -> dict[str, Any]:
    """Factories of the deployments compared (made one at a time: each holds processes or threads)."""
    factory = ("factory", "recc.models:create", {"name": model, "scale": scale, "seed": 0})
    return {
        "eager-static 2 workers x 1 thread": lambda: pooled(model, recc.load(art, threads=1), factory, 2, 1),
        "eager-static 1 process x 2 threads": lambda: _eager_in_process(model, eager, recc.load(art, threads=1), 2),
        "recc-static 2 workers x 1 thread": lambda: pooled(model, recc.load(art, threads=1), ("artifact", str(art)), 2, 1),
        "recc-static 1 process x 2 threads": lambda: in_process(model, recc.load(art, threads=2)),
    }


def _static(deployment: Deployment) -> Deployment:
    deployment.coalesce, deployment.split, deployment.max_batch = False, False, 1 << 20
    return deployment


def _check(art: Path, eager: torch.nn.Module, pool: QueryPool) -> float:
    """Max |recc - eager| on a 100-row query (the benchmark serves what it claims to)."""
    query = pool.query(100, 0)
    with torch.inference_mode():
        expected = eager(*query).numpy()
    return float(np.abs(recc.load(art, threads=1)(*query).numpy() - expected).max())


def run_model(model: str, args: argparse.Namespace, work: Path, plots: Path) -> dict[str, Any]:
    eager = create(model, scale=args.scale, seed=0).eval()
    art = work / f"{model}-{args.scale}.recc"
    _say(f"{model}: compiling at scale {args.scale} ...")
    recc.compile(eager, eager.example_inputs(4, seed=0), tuning_db=None).save(art)
    sizes = parse_sizes(args.sizes)
    pool = QueryPool(recc.load(art, threads=1), max(sizes.largest, 100), seed=args.seed)
    out: dict[str, Any] = {"artifact_bytes": sum(f.stat().st_size for f in art.rglob("*") if f.is_file()),
                           "max_abs_diff_vs_eager": _check(art, eager, pool), "slas": {}}
    for sla in args.sla_ms:
        objective = Objective(sla_ms=sla, duration_s=args.duration, seed=args.seed, min_queries=args.min_queries,
                              max_duration_s=args.max_duration)
        results: dict[str, Any] = {}
        for system, make in _systems(model, args.scale, art, eager).items():
            deployment = _static(make())
            try:
                warm(deployment, pool)
                _say(f"{model} sla {sla:g} ms: {system}")
                best, trials = max_qps(deployment, pool, sizes, objective, estimate_qps(deployment, pool, sizes), _say)
            finally:
                deployment.close()
            results[system] = {"max_qps": best, "trials": trials}
        _say(f"{model} sla {sla:g} ms: recc-sched (tuning layout and rows per call)")
        tuned = tune_layouts(lambda w, t: artifact_deployment(model, str(art), w, t), [(2, 1), (0, 2)], sizes,
                             objective, _say)
        results["recc-sched"] = {"max_qps": tuned["max_qps"], "max_batch": tuned["max_batch"],
                                 "workers": tuned["workers"], "worker_threads": tuned["worker_threads"],
                                 "layouts": tuned["layouts"]}
        out["slas"][str(sla)] = _ratios(results)
        _plot(model, sla, results, plots)
    return out


def _plot(model: str, sla: float, results: dict[str, Any], plots: Path) -> None:
    """p95 against offered load for every trial each system's searches ran (recc-sched: its chosen layout)."""
    from recc.runtime.plot import latency_vs_load

    series = {name: r["trials"] for name, r in results.items() if "trials" in r}
    sched = results["recc-sched"]
    chosen = next(layout for layout in sched["layouts"] if layout["workers"] == sched["workers"])
    series["recc-sched"] = [t for point in chosen["curve"] if point["max_batch"] == sched["max_batch"]
                            for t in point["trials"]]
    latency_vs_load(series, plots / f"{model}-sla{sla:g}.png", sla_ms=sla, percentiles=("p95",),
                    title=f"{model}: p95 latency vs offered load")


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    def best(prefix: str) -> tuple[str, float]:
        name = max((k for k in results if k.startswith(prefix)), key=lambda k: results[k]["max_qps"])
        return name, results[name]["max_qps"]

    sched = results["recc-sched"]["max_qps"]
    (eager_name, eager), (static_name, static) = best("eager-static"), best("recc-static")
    return {"systems": results, "best_eager_static": eager_name, "best_recc_static": static_name,
            "sched_vs_recc_static": sched / static if static else None,
            "sched_vs_eager_static": sched / eager if eager else None}


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# Latency-bounded throughput ({results['config']['sizes']} query sizes, p95 within the SLA)", "",
             f"CPU: {results['machine']['cpu_model']}, {results['machine']['cores_available_to_process']} cores; "
             f"scale {results['config']['scale']} (tables in cache); command: `{' '.join(results['command'])}`", "",
             "| model | SLA ms | eager-static | recc-static | recc-sched (layout, rows/call) | sched / recc-static | sched / eager |",
             "|---|---|---|---|---|---|---|"]
    for model, r in results["models"].items():
        for sla, s in r["slas"].items():
            systems = s["systems"]
            sched = systems["recc-sched"]
            layout = f"{sched['workers']}x{sched['worker_threads']}" if sched["workers"] else "in process"
            ratio = (lambda x: f"{x:.2f}x" if x else "n/a")
            lines.append(f"| {model} | {sla} | {systems[s['best_eager_static']]['max_qps']:.0f} ({s['best_eager_static'][13:]}) "
                         f"| {systems[s['best_recc_static']]['max_qps']:.0f} ({s['best_recc_static'][12:]}) "
                         f"| {sched['max_qps']:.0f} ({layout}, {sched['max_batch']}) | {ratio(s['sched_vs_recc_static'])} "
                         f"| {ratio(s['sched_vs_eager_static'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="dlrm-rmc1,din")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--sla-ms", default="10,20", help="comma-separated SLAs (p95, ms)")
    parser.add_argument("--sizes", default="deeprecsys")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured load (>= 200 queries)")
    parser.add_argument("--min-queries", type=int, default=200, help="queries per measured load, at least")
    parser.add_argument("--max-duration", type=float, default=20.0, help="seconds per measured load, at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/recc-serving-bench", help="where artifacts are compiled")
    parser.add_argument("--out", required=True, help="directory for throughput.json and throughput.md")
    args = parser.parse_args()
    args.sla_ms = [float(v) for v in args.sla_ms.split(",")]
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results: dict[str, Any] = {"command": [sys.executable, *sys.argv], "machine": describe_machine(),
                               "config": {k: v for k, v in vars(args).items()}, "models": {}}
    for model in args.models.split(","):
        results["models"][model] = run_model(model, args, work, out)
        results["elapsed_s"] = time.time() - start
        (out / "throughput.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "throughput.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
