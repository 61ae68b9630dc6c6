"""One benchmarked system in its own process, driven by the harness over a pipe.

Each (model, system) pair gets a fresh process (forked from a server that did the imports), so
- peak resident memory is per system and honest: the process's own high-water mark (`VmHWM`), next to
  its resident size after imports and building the model (`baseline`), which every system pays alike;
- a system cannot warm caches, allocator pools or thread pools for another;
- the harness still interleaves rounds across systems: it asks each process in turn for `n` timed calls.

Commands (tuples) and replies:
    (after imports and building the model)  -> ("loaded",)
    ("setup",)                       -> ("ready", facts) once the system is built
    ("prepare", batch, seed, warmup) -> ("ok", output ndarray, first_call_s, cell facts dict)
    ("time", n)                      -> ("ok", [seconds per call])
    ("memory",)                      -> ("ok", {"baseline_mb", "rss_mb", "peak_mb"})
    ("quit",)                        -> process exits
Any failure replies ("error", traceback text) and the process keeps serving.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any


def thread_environment(threads: int) -> dict[str, str]:
    """Environment that pins every runtime's thread pool before it starts (set before spawning).

    With several threads, pools must also not spin when idle: the systems run in separate processes that
    take turns on the same cores, and OpenMP's (or ORT's) spinning workers in an idle process steal cores
    from the process being timed — measured: recc at 2 threads fell from 4.9x to 0.07x eager on NCF batch 16
    with spinning neighbours. So every pool spins only briefly before it sleeps: GNU OpenMP (torch, MKL,
    inductor) GOMP_SPINCOUNT=20000, ORT allow_spinning=0, TVM_THREAD_POOL_SPIN_COUNT=1000. Not
    OMP_WAIT_POLICY=PASSIVE: its workers sleep between torch's back-to-back ops, which made eager 3.3x slower
    at 2 threads (DLRM-RMC1 batch 64: 1,678 us passive, 505 default, 500 with the short spin)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "TVM_NUM_THREADS": str(threads), "TORCHINDUCTOR_COMPILE_THREADS": "1",
            "GOMP_SPINCOUNT": "20000", "TVM_THREAD_POOL_SPIN_COUNT": "1000"}


def memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MiB."""
    values: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": values.get("VmRSS", float("nan")), "peak_mb": values.get("VmHWM", float("nan"))}


def serve(conn: Connection, model_name: str, scale: float, system_name: str, threads: int,
          options: dict[str, Any], log_path: str | None) -> None:
    """Process entry point: build the model and the system, report setup facts, then serve commands.

    torch.compile caches into a directory of this worker's own, removed when it ends: its compile times are
    cold, not hits in the FX-graph or autotune caches another worker or an earlier run left behind."""
    cache = tempfile.mkdtemp(prefix="recc-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        _serve(conn, model_name, scale, system_name, threads, options, log_path)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _serve(conn: Connection, model_name: str, scale: float, system_name: str, threads: int,
           options: dict[str, Any], log_path: str | None) -> None:
    if log_path:  # exporters and compilers are chatty; keep the harness's terminal for the progress bar
        log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    try:
        import torch
        from recc.bench.policies import policy_facts
        from recc.bench.systems import make_system
        from recc.models import create

        torch.set_num_threads(threads)
        model = create(model_name, scale=scale, seed=0)
        baseline = memory_mb()["rss_mb"]
        conn.send(("loaded",))
        if conn.recv()[0] != "setup":  # the harness builds systems one at a time: honest compile times
            return
        system = make_system(system_name, **options)
        with torch.inference_mode():
            facts = system.setup(model, threads)
        facts["torch_threads"] = torch.get_num_threads()
        facts["thread_pool"] = policy_facts(system_name, options.get("spin", "off"), threads)
        facts["pid"] = os.getpid()
        conn.send(("ready", facts))
    except Exception:  # noqa: BLE001 - the harness records the failure and goes on without this system
        conn.send(("error", traceback.format_exc()))
        return
    call: Any = None
    with torch.inference_mode():
        while True:
            command = conn.recv()
            try:
                if command[0] == "quit":
                    return
                if command[0] == "prepare":
                    _, batch, seed, warmup = command
                    inputs = model.example_inputs(batch, seed=seed)
                    start = time.perf_counter()
                    call = system.prepare(inputs)
                    if not getattr(system, "compiles_in_prepare", False):  # else its first call is compiled there
                        start = time.perf_counter()
                    output = system.to_numpy(call())
                    first_call_s = time.perf_counter() - start
                    for _ in range(warmup):
                        call()
                    cell_facts = system.cell_facts() if hasattr(system, "cell_facts") else {}
                    conn.send(("ok", output, first_call_s, cell_facts))
                elif command[0] == "time":
                    conn.send(("ok", time_calls(call, command[1])))
                elif command[0] == "memory":
                    conn.send(("ok", {"baseline_mb": baseline, **memory_mb()}))
                else:
                    conn.send(("error", f"unknown command {command[0]!r}"))
            except Exception:  # noqa: BLE001
                conn.send(("error", traceback.format_exc()))


def time_calls(call: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times
