"""What keeping IEEE semantics (NaN and +-inf as eager PyTorch) costs the fused CPU kernels, old vs new in
one process.

    python -m recc.bench.ieee_cost [--batch 64] [--rounds 15] [--out bench/results/ieee]

`old` is each kernel built with the epilogues as they were before (kept here only, `_old_fast_exp` and
`_old_activation_expr`: relu as T.max(x, 0), fast_exp clamped by T.max / T.min (NaN -> -88.38, +inf ->
88.38) with 2^n from a float -> int conversion, gelu without the +-inf select), swapped into the kernel modules while it is built; `new` is the kernels as shipped.
The kernels: dense + relu, dense + sigmoid, dense + gelu, DIN's target attention (S 50, D 32, MLP 80-40-1
sigmoid, score bias), GRU and AUGRU (DIEN's: L 40, H 64), and a control: the new DIN kernel built twice and
timed as if old and new (the noise and order bias of the method alone). Inputs are seeded random
normals of the shapes each PrimFunc takes; old and new outputs are compared first (finite inputs: they
must agree). Timing: 1 thread (TVM_NUM_THREADS=1, set before TVM starts), each round times every kernel
in both variants (the order alternates between rounds) as a block of calls after 2 warm-up calls; the
table gives the median per-call time over all rounds, new / old, and the median and 10th-90th
percentile of the per-round ratios (paired within a round, so load drifting between rounds cancels). Results as markdown and JSON, with the CPU, the git commit and the command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np
import tvm
from tvm.script import tirx as T

from recc.bench.machine import describe_machine
from recc.compiler.codegen.tvm.kernels.cpu import attention, common, dense, recurrent
from recc.compiler.codegen.tvm.target import resolve_target

CONTROL = "control: din target_attention, new vs new"  # A/A: the ratio noise and order bias alone
KERNELS: dict[str, Callable[[], Any]] = {
    "dense 512x256 relu": lambda: dense.dense_kernel(512, 256, "relu"),
    "dense 256x256 sigmoid": lambda: dense.dense_kernel(256, 256, "sigmoid"),
    "dense 256x256 gelu": lambda: dense.dense_kernel(256, 256, "gelu"),
    "din target_attention": lambda: attention.target_attention(50, 32, (80, 40, 1), ("sigmoid", "sigmoid"), True),
    "gru L40 H64": lambda: recurrent.gru_sequence(40, 64, "gru"),
    "augru L40 H64": lambda: recurrent.gru_sequence(40, 64, "augru"),
    CONTROL: lambda: attention.target_attention(50, 32, (80, 40, 1), ("sigmoid", "sigmoid"), True),
}


def _old_fast_exp(x):
    """fast_exp before IEEE semantics: the clamp turns NaN into -88.38 and +inf into 88.38."""
    x = T.min(T.max(x, T.float32(-88.3762626647949)), T.float32(88.3762626647949))
    n = T.floor(x * T.float32(1.44269504088896341) + T.float32(0.5))
    r = x - n * T.float32(0.693359375) - n * T.float32(-2.12194440e-4)
    p = T.float32(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + T.float32(c)
    two_n = T.reinterpret("float32", T.shift_left(T.Cast("int32", n) + T.int32(127), T.int32(23)))
    return (p * r * r + r + T.float32(1)) * two_n


def _old_activation_expr(name: str, x, alpha: float = 0.01):
    """activation_expr before IEEE semantics (relu and gelu differ; the rest through _old_fast_exp)."""
    zero, one, half, two = T.float32(0), T.float32(1), T.float32(0.5), T.float32(2)
    if name == "none":
        return x
    if name == "relu":
        return T.max(x, zero)
    if name == "sigmoid":
        return one / (one + _old_fast_exp(-x))
    if name == "tanh":
        return two / (one + _old_fast_exp(-two * x)) - one
    if name == "silu":
        return x / (one + _old_fast_exp(-x))
    if name == "gelu":
        return half * x * (one + T.erf(x * T.float32(1 / math.sqrt(2))))
    if name == "leaky_relu":
        return T.Select(x > zero, x, x * T.float32(alpha))
    raise ValueError(f"no old epilogue for {name!r}")


@contextmanager
def _old_epilogues():
    saved = common.fast_exp, common.activation_expr, recurrent.activation_expr
    common.fast_exp, common.activation_expr, recurrent.activation_expr = \
        _old_fast_exp, _old_activation_expr, _old_activation_expr
    try:
        yield
    finally:
        common.fast_exp, common.activation_expr, recurrent.activation_expr = saved


def _build(make: Callable[[], Any]) -> Any:
    func = make().with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=resolve_target("cpu").to_tvm())["main"]


def _arguments(func: Any, batch: int, seed: int) -> list[Any]:
    """Seeded normal arrays of the shapes the PrimFunc's buffers have (its symbolic dim = batch)."""
    rng = np.random.default_rng(seed)
    args = []
    for param in func.params:
        shape = [batch if isinstance(d, tvm.tirx.Var) else int(d) for d in param.shape]
        args.append(tvm.runtime.tensor((rng.standard_normal(shape) * 0.3).astype(str(param.dtype))))
    return args


def _block(fn: Callable[[], Any], calls: int) -> float:
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _prepare(batch: int, only: Sequence[str] = ()) -> dict[str, dict[str, Callable[[], Any]]]:
    """Per kernel, the old and new callables, after checking that they agree on finite inputs."""
    prepared = {}
    for i, (name, make) in enumerate(KERNELS.items()):
        if only and name not in only:
            continue
        func = make()
        new = _build(make)
        if name == CONTROL:
            old = _build(make)
        else:
            with _old_epilogues():
                old = _build(make)
        args_new, args_old = _arguments(func, batch, i), _arguments(func, batch, i)
        new(*args_new)
        old(*args_old)
        np.testing.assert_allclose(args_new[-1].numpy(), args_old[-1].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        prepared[name] = {"old": lambda f=old, a=args_old: f(*a), "new": lambda f=new, a=args_new: f(*a)}
    return prepared


def measure(batch: int, rounds: int, block_s: float, only: Sequence[str] = ()) -> dict[str, Any]:
    prepared = _prepare(batch, only)
    calls = {name: max(3, int(block_s / _block(fns["new"], 3))) for name, fns in prepared.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"old": [], "new": []} for name in prepared}
    for r in range(rounds):
        for name, fns in prepared.items():
            for variant in (("old", "new") if r % 2 == 0 else ("new", "old")):
                times[name][variant].append(_block(fns[variant], calls[name]))
    rows = {}
    for name, t in times.items():
        ratios = np.array(t["new"]) / np.array(t["old"])
        rows[name] = {"old_us": float(np.median(t["old"]) * 1e6), "new_us": float(np.median(t["new"]) * 1e6),
                      "new_over_old": float(np.median(t["new"]) / np.median(t["old"])),
                      "round_ratio_median": float(np.median(ratios)),
                      "round_ratio_p10": float(np.percentile(ratios, 10)),
                      "round_ratio_p90": float(np.percentile(ratios, 90)), "calls_per_block": calls[name]}
    return rows


def _markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = ["# IEEE semantics: cost in the fused CPU kernels (old vs new epilogues)", "",
             f"- command: `{result['command']}`", f"- git commit: {m['git_commit']}",
             (f"- CPU: {m['cpu_model']} ({m['llvm_cpu']}), 1 thread, batch {result['batch']}, "
              f"{result['rounds']} interleaved rounds"), "",
             "| kernel | old (us) | new (us) | new / old | per-round new / old: median, p10-p90 |",
             "|---|---:|---:|---:|---|"]
    for name, row in result["kernels"].items():
        lines.append(f"| {name} | {row['old_us']:.1f} | {row['new_us']:.1f} | {row['new_over_old']:.3f} | "
                     f"{row['round_ratio_median']:.3f}, {row['round_ratio_p10']:.3f}-{row['round_ratio_p90']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block-s", type=float, default=0.02, help="seconds per timed block")
    parser.add_argument("--out", default="bench/results/ieee")
    parser.add_argument("--kernels", default="", help="comma-separated subset of the kernels (default: all)")
    args = parser.parse_args(argv)
    result = {"command": " ".join(["python -m recc.bench.ieee_cost", *(argv if argv is not None else sys.argv[1:])]),
              "batch": args.batch, "rounds": args.rounds, "threads": int(os.environ["TVM_NUM_THREADS"]),
              "machine": describe_machine(), "kernels": measure(args.batch, args.rounds, args.block_s,
                                 [k for k in args.kernels.split(",") if k])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ieee_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ieee_cost.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
