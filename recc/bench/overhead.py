"""Per-call overhead at batch 1: what a recc call costs beyond its kernels' own work.

    python -m recc.bench.overhead [--models all] [--scale 0.01] [--threads 1] [--rounds 7] [--out DIR]

Per model, three things are timed, interleaved in rounds on the same batch-1 inputs (64-byte aligned
torch tensors, as torch's allocator gives them):
- call: `compiled(*inputs)`, the whole Python call (input checks, id range check, the compiled
  function, the output tensor);
- function: the artifact's compiled Relax function alone (at batch 1 its "main_b1", static shapes): argument
  conversion in tvm-ffi, the function's own shape/dtype checks, intermediate allocation, kernel calls;
- kernels: each kernel of the artifact's library, on the very arguments the function gives it (captured
  from a bytecode build of the same lowered module, whose VM can be instrumented), timed as it runs in
  sequence with the others (so with the caches a real call leaves it: a 5 MB layer evicts the next
  layer's weights from L2, and that is kernel work), less the Python cost of calling it (measured on
  the same kernel alone against TVM's C++ time_evaluator); summed. The hot sum (each kernel alone in a
  C++ loop) is recorded too.
overhead = call - kernels (the issue's definition: everything but the kernels' own work), split into
python = call - function and runtime = function - kernels. Eager PyTorch's batch-1 time is printed
beside it for scale. Medians over all timed calls; threads pinned in torch and TVM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ALL_MODELS = ("dlrm-rmc1", "dlrm-rmc2", "dlrm-rmc3", "ncf", "wnd", "mt-wnd", "din", "dien")
TARGET_US = 20.0


def _kernel_calls(model: torch.nn.Module, inputs: list[torch.Tensor]) -> list[tuple[str, tuple[Any, ...]]]:
    """(kernel name, arguments) for every kernel call of one batch-1 run, from a bytecode build of the same
    optimized, lowered graph (only a bytecode VM can be instrumented)."""
    import tvm
    from tvm import relax

    from recc.api import optimize
    from recc.compiler.codegen.tvm import resolve_target
    from recc.compiler.codegen.tvm.build import lower_for_target
    from recc.compiler.input_checks import id_checks
    from recc.frontends.torch_export import capture

    graph = capture(model, inputs)
    limits = id_checks(graph).ids  # as recc.compile does: on the graph as captured
    optimize(graph)
    target = resolve_target("cpu")
    lowered = lower_for_target(graph, target, id_limits=limits)  # what recc.compile builds, as bytecode
    with tvm.transform.PassContext(opt_level=3):
        executable = relax.build(lowered.module, target=target.to_tvm(), exec_mode="bytecode")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def record(func: Any, name: str, before: bool, result: Any, *args: Any) -> int:
        if before and not name.startswith("vm.builtin") and name != "shape_func":
            calls.append((name, args))
        return 0

    vm.set_instrument(record)
    weights = [tvm.runtime.tensor(lowered.weights[name]) for name in lowered.weight_names]
    vm["main_b1" if lowered.specialized else "main"](*[tvm.runtime.tensor(x.numpy()) for x in inputs], *weights)
    return calls


def _median_ns(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def _kernel_us(library: Any, calls: list[tuple[str, tuple[Any, ...]]], rounds: int) -> dict[str, dict[str, float]]:
    """Per kernel call: `hot`, TVM's time_evaluator on it alone (C++ loop: caches as warm as they get), and
    `in_sequence`, its time when the kernels run one after another as in a call (a big layer's weights
    push the next layer's out of L2: that is the kernels' work too, not overhead), measured from Python
    and corrected by the Python cost of calling that same kernel (its Python-timed time alone minus `hot`)."""
    import tvm

    functions = [library[name] for name, _ in calls]
    out: dict[str, dict[str, float]] = {}
    for index, ((name, args), fn) in enumerate(zip(calls, functions)):
        timer = library.time_evaluator(name, tvm.cpu(), number=100, repeat=9, min_repeat_ms=5)
        hot = statistics.median(timer(*args).results) * 1e9
        alone = _median_ns(lambda: fn(*args), 2000)
        out[f"{index}:{name}"] = {"hot": hot, "python_call": max(alone - hot, 0.0)}
    in_sequence: list[list[int]] = [[] for _ in calls]
    for _ in range(rounds * 100):
        for index, ((_, args), fn) in enumerate(zip(calls, functions)):
            start = time.perf_counter_ns()
            fn(*args)
            in_sequence[index].append(time.perf_counter_ns() - start)
    for (key, row), times in zip(out.items(), in_sequence):
        row["in_sequence"] = max(statistics.median(times) - row["python_call"], row["hot"])
    return {key: {k: v / 1000 for k, v in row.items()} for key, row in out.items()}


def _interleaved(systems: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in systems}
    for fn in systems.values():
        for _ in range(20):
            fn()
    for _ in range(rounds):
        for name, fn in systems.items():
            for _ in range(calls):
                start = time.perf_counter_ns()
                fn()
                times[name].append(time.perf_counter_ns() - start)
    return {name: statistics.median(t) / 1000 for name, t in times.items()}


def measure(model_name: str, scale: float, threads: int, rounds: int, calls: int) -> dict[str, Any]:
    import tvm

    import recc
    from recc.models import create

    model = create(model_name, scale=scale, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), name=model_name, threads=threads)
    inputs = [x.clone() for x in model.example_inputs(1, seed=1)]  # clone: torch-allocated, 64-byte aligned
    with torch.inference_mode():
        error = float((compiled(*inputs) - model(*inputs)).abs().max())
    library = tvm.runtime.load_module(str(compiled.path / "lib.so")).imports[0]
    kernels = _kernel_us(library, _kernel_calls(model, inputs), rounds)
    weights = compiled._weights
    function = compiled._function_for(1)  # what a batch-1 call uses
    with torch.inference_mode():
        medians = _interleaved({"call": lambda: compiled(*inputs),
                                "function": lambda: function(*inputs, *weights),
                                "eager": lambda: model(*inputs)}, rounds, calls)
    kernel_sum = sum(k["in_sequence"] for k in kernels.values())
    return {"model": model_name, "scale": scale, "threads": threads, "max_abs_error": error,
            "call_us": medians["call"], "function_us": medians["function"], "kernels_us": kernel_sum,
            "kernels_hot_us": sum(k["hot"] for k in kernels.values()),
            "overhead_us": medians["call"] - kernel_sum, "python_us": medians["call"] - medians["function"],
            "runtime_us": medians["function"] - kernel_sum, "eager_us": medians["eager"],
            "kernel_calls": len(kernels), "per_kernel_us": {key: {k: round(v, 3) for k, v in row.items()} for key, row in kernels.items()}}


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | call us | function us | kernels us (calls) | kernels hot us | overhead us | python us | "
            f"runtime us | <= {TARGET_US:.0f}? | eager us |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
    return head + "\n".join(
        f"| {r['model']} | {r['call_us']:.1f} | {r['function_us']:.1f} | {r['kernels_us']:.1f} ({r['kernel_calls']}) | "
        f"{r['kernels_hot_us']:.1f} | "
        f"{r['overhead_us']:.1f} | {r['python_us']:.1f} | {r['runtime_us']:.1f} | "
        f"{'yes' if r['overhead_us'] <= TARGET_US else 'NO'} | {r['eager_us']:.1f} |" for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recc.bench.overhead", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="all", help="comma-separated, or all")
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=300, help="timed calls per system per round")
    p.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    args = p.parse_args(argv)
    names = ALL_MODELS if args.models == "all" else tuple(args.models.split(","))
    torch.set_num_threads(args.threads)
    from recc.bench.machine import describe_machine

    rows = []
    for name in names:
        print(f"{name}: compiling and measuring ...", flush=True)
        rows.append(measure(name, args.scale, args.threads, args.rounds, args.calls))
        r = rows[-1]
        print(f"  call {r['call_us']:.1f} us = kernels {r['kernels_us']:.1f} + overhead {r['overhead_us']:.1f} "
              f"(python {r['python_us']:.1f}, runtime {r['runtime_us']:.1f}); eager {r['eager_us']:.1f}; "
              f"max abs err {r['max_abs_error']:.2g}", flush=True)
    table = _table(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps({"machine": describe_machine(), "rows": rows,
                                                           "command": " ".join(["python -m recc.bench.overhead"]
                                                                               + (argv or []))}, indent=1))
        (args.out / "results.md").write_text(f"Batch-1 per-call overhead, scale {args.scale}, {args.threads} "
                                             f"thread(s), medians\n\n{table}\n")
    return 0 if all(np.isfinite(r["max_abs_error"]) and r["max_abs_error"] <= 1e-4 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
