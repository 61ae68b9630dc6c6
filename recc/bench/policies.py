"""Thread-pool policies for `recc bench --spin off|on|both`: what idle worker threads do between calls.

- off (the default, and what every run before this option measured): idle pools spin briefly, then sleep.
  GNU OpenMP (torch, MKL, inductor's kernels) GOMP_SPINCOUNT=20000; TVM's pool (recc)
  TVM_THREAD_POOL_SPIN_COUNT=1000; ONNX Runtime `session.intra_op.allow_spinning=0` (no spinning at all:
  the one pool whose "off" is really off). See worker.thread_environment for why.
- on: every pool at its library default, which spins: GOMP_SPINCOUNT and TVM_THREAD_POOL_SPIN_COUNT unset
  (libgomp's default 300,000 spins, TVM's 300,000), ONNX Runtime `allow_spinning=1` (its default).
- both: every system twice, as two entries interleaved in the same rounds: `name` (off) and `name+spin`
  (on); the report adds each system's best policy per cell.

A library reads these variables when it is loaded (libgomp) or when its pool starts, so they must be in the
environment before the worker process imports torch. The off policy's workers are forked from the harness's
forkserver, which imported torch once under the off environment; the on policy's workers are `spawn`ed
(a fresh interpreter that imports everything itself, ~6 s more per worker) under the on environment.
With one thread there is no worker thread to spin, and the two policies should time alike.
Under `both`, a `+spin` process keeps its cores busy for its spin count (libgomp's and TVM's 300,000 spins;
not measured here) after its turn ends, so the next system's first calls in a round can share the
cores with it; the median over a round's calls is what the tables report.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SPIN_CHOICES = ("off", "on", "both")
DEFAULT_SPIN = "off"
SPIN_SUFFIX = "+spin"
SPIN_VARIABLES = ("GOMP_SPINCOUNT", "TVM_THREAD_POOL_SPIN_COUNT")  # set by thread_environment for "off"
ORT_SYSTEMS = ("ort", "ort-best", "ort-int8")
RECC_SYSTEMS = ("recc", "recc-int8", "recc-bf16", "recc-auto")


def policies(spin: str) -> tuple[str, ...]:
    if spin not in SPIN_CHOICES:
        raise ValueError(f"--spin must be one of {', '.join(SPIN_CHOICES)}, not {spin!r}")
    return ("off", "on") if spin == "both" else (spin,)


def entry_name(system: str, policy: str) -> str:
    return system if policy == "off" else system + SPIN_SUFFIX


def base_system(entry: str) -> str:
    return entry.removesuffix(SPIN_SUFFIX)


def entry_policy(entry: str) -> str:
    return "on" if entry.endswith(SPIN_SUFFIX) else "off"


def entries(systems: tuple[str, ...], spin: str) -> tuple[str, ...]:
    """The run's entries in report order: each system under each policy (`eager`, `eager+spin`, ...)."""
    return tuple(entry_name(system, policy) for system in systems for policy in policies(spin))


def policy_environment(threads: int, policy: str) -> dict[str, str | None]:
    """Variables to set (str) or remove (None) in a worker's environment under `policy`."""
    from recc.bench.worker import thread_environment

    environment: dict[str, str | None] = dict(thread_environment(threads))
    if policy == "on":
        environment.update({name: None for name in SPIN_VARIABLES})
    return environment


@contextmanager
def environment_applied(changes: dict[str, str | None]) -> Iterator[None]:
    """os.environ with `changes` for the duration (a spawned child copies it when it starts)."""
    saved = {name: os.environ.get(name) for name in changes}
    _apply(changes)
    try:
        yield
    finally:
        _apply(saved)


def _apply(changes: dict[str, str | None]) -> None:
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def worker_context(policy: str, preload: list[str]) -> Any:
    """The off policy forks from the shared forkserver (started under the off environment); on spawns."""
    if policy == "on":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def policy_facts(system: str, policy: str, threads: int) -> dict[str, Any]:
    """What `policy` changes for `system`, and what it cannot (recorded with the system's setup facts)."""
    spin = policy == "on"
    facts: dict[str, Any] = {"spin_policy": policy, "worker_start": "spawn" if spin else "forkserver"}
    if system in ORT_SYSTEMS:
        facts["pool"] = f"ONNX Runtime intra-op pool: session.intra_op.allow_spinning={int(spin)}"
        facts["also"] = "torch's libgomp pool (idle here): GOMP_SPINCOUNT " + ("default" if spin else "20000")
    elif system in RECC_SYSTEMS:
        facts["pool"] = "TVM thread pool: TVM_THREAD_POOL_SPIN_COUNT " + ("default (300000)" if spin else "1000")
        facts["also"] = "torch's libgomp pool (input conversion only): GOMP_SPINCOUNT " + ("default" if spin else "20000")
    else:
        facts["pool"] = "GNU OpenMP (libgomp): GOMP_SPINCOUNT " + ("default (300000)" if spin else "20000")
    if threads == 1:
        facts["note"] = "1 thread: no worker threads, so the policy has nothing to act on"
    return facts


def best_policy_lines(results: dict[str, Any]) -> list[str]:
    """Markdown: per cell and system, the median under each policy and the better one (runs with --spin both)."""
    config = results["config"]
    if config.get("spin") != "both":
        return []
    cells = {(c["model"], c["batch"], c["system"]): c for c in results["cells"]}
    lines = ["## Thread-pool policy: each system's best per cell", "",
             ("off = idle pools spin briefly then sleep (ONNX Runtime: no spinning); on = library defaults "
              "(spinning). Both entries of a system ran interleaved in the same rounds. Median latency in us; "
              "best = the faster policy among those that matched eager; speedup = eager's best / system's best."), "",
             "| model | batch | system | off us | on us | best | best us | speedup vs eager (best) |",
             "|---|---:|---|---:|---:|---|---:|---:|"]
    for model in config["models"]:
        for batch in config["batches"]:
            eager = _best(cells, model, batch, "eager")
            for system in config["systems"]:
                best = _best(cells, model, batch, system)
                medians = [_median_text(cells.get((model, batch, entry_name(system, p)))) for p in ("off", "on")]
                if best is None:
                    lines.append(f"| {model} | {batch} | {system} | {' | '.join(medians)} | - | - | - |")
                    continue
                speedup = f"{eager['median_us'] / best['median_us']:.2f}x" if eager else "-"
                lines.append(f"| {model} | {batch} | {system} | {' | '.join(medians)} | {entry_policy(best['system'])} "
                             f"| {best['median_us']:.1f} | {speedup} |")
    return lines + [""]


def _best(cells: dict[tuple[str, int, str], dict[str, Any]], model: str, batch: int,
          system: str) -> dict[str, Any] | None:
    candidates = [cells.get((model, batch, entry_name(system, p))) for p in ("off", "on")]
    ok = [c for c in candidates if c and c.get("status") == "ok"]
    return min(ok, key=lambda c: c["median_us"]) if ok else None


def _median_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if cell.get("status") in ("ok", "unchecked"):
        return f"{cell['median_us']:.1f}"
    return cell.get("status", "-")
