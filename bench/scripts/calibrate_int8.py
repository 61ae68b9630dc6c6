"""Static (calibrated) vs dynamic int8 activations: one int8 layer's time and two models' accuracy and time.

    TVM_NUM_THREADS=1 python bench/scripts/calibrate_int8.py [--rounds 15] [--out bench/results/precision/calibrate]

1. The int8 dense kernel the CPU has (AMX, else VNNI) for a 1024x1024 (and a 1024x32) Linear at batch 1, 64, 256, dynamic
   (per-row min/max pass, then quantize) vs static (one pass with the calibrated scale baked in); TVM's
   time_evaluator, the two variants interleaved round by round, medians.
2. RMC3 and WnD compiled int8 dynamic and with calibrate=N for a few N: the compile's own accuracy vs fp32
   on its 256 held-out rows (max/mean abs, top-10 agreement), and the model's time per call at batch 1, 64,
   256 (interleaved rounds, medians), 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BATCHES = (1, 64, 256)


def kernel_times(rounds: int, k: int = 1024, n: int = 1024) -> dict:
    import tvm

    from recc.compiler.codegen.tvm.kernels.cpu import dense_int8 as d8
    from recc.compiler.codegen.tvm.lowering.dense import int8_kernel
    from recc.compiler.codegen.tvm.target import resolve_target
    from recc.compiler.host import request_amx
    from recc.compiler.quantize import range_params

    target = resolve_target("cpu")
    kind = int8_kernel(target)
    if kind == "amx":
        request_amx()
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((n, k)).astype(np.float32) / 32, rng.standard_normal(n).astype(np.float32)
    scale, _, zp = range_params(np.float32(-4), np.float32(4))
    dev = tvm.cpu()
    packed = [tvm.runtime.tensor(a, dev) for a in (*[d8.pack_int8(w, b)[p] for p in ("w", "scale", "colsum", "bias")],
                                                   d8.tile_config())]
    funcs = {}
    for name, act in (("dynamic", None), ("static", (float(scale), float(zp)))):
        func = d8.KERNELS[kind](k, n, "relu", 0.01, act).with_attr("global_symbol", "main")
        funcs[name] = tvm.compile(tvm.IRModule({"main": func}), target=target.to_tvm()).mod
    out: dict = {"kernel": kind, "shape": f"{k}x{n}", "us": {}}
    for m in BATCHES:
        args = [tvm.runtime.tensor(rng.standard_normal((m, k)).astype(np.float32), dev), *packed,
                tvm.runtime.tensor(np.zeros((m, n), np.float32), dev),
                tvm.runtime.tensor(np.zeros((d8.scratch_rows(m, kind), d8.row_stride(k)), np.uint8), dev),
                tvm.runtime.tensor(np.zeros((d8.scratch_rows(m, kind), 2), np.float32), dev)]
        number = max(20, 20000 // m)
        samples: dict[str, list[float]] = {name: [] for name in funcs}
        for r in range(rounds):
            for name in (list(funcs) if r % 2 == 0 else list(funcs)[::-1]):
                timer = funcs[name].time_evaluator("main", dev, number=number, repeat=1)
                samples[name].append(timer(*args).mean * 1e6)
        out["us"][m] = {name: round(statistics.median(v), 2) for name, v in samples.items()}
        print(f"{kind} {k}x{n} batch {m}: " + ", ".join(f"{k_} {v:.2f} us" for k_, v in out["us"][m].items()),
              flush=True)
    return out


def queries_vs_eager(model, compiled: dict, queries: int = 20, rows: int = 256) -> dict:
    """Each variant vs eager fp32 on `queries` held-out queries of `rows` candidates (seeds unseen by the
    compile): max and mean abs over all, mean top-10 agreement."""
    from recc.compiler.accuracy import errors

    per: dict[str, list[dict]] = {v: [] for v in compiled}
    for q in range(queries):
        inputs = model.example_inputs(rows, seed=5000 + q)
        with torch.no_grad():
            eager = [model(*inputs).numpy()]
        for v, fn in compiled.items():
            per[v].append(errors(eager, [fn(*inputs).numpy()], rows))
    return {v: {"max_abs": max(e["max_abs"] for e in es), "mean_abs": float(np.mean([e["mean_abs"] for e in es])),
                "top_k_agreement": float(np.mean([e["top_k_agreement"] for e in es]))} for v, es in per.items()}


def model_runs(models: list[str], calibrations: list[int], rounds: int) -> dict:
    import recc
    from recc.models import create

    results = {}
    for name in models:
        model = create(name, scale=0.01, seed=0)
        examples = model.example_inputs(4, seed=0)
        variants = {"dynamic": None, **{f"static-{c}": c for c in calibrations}}
        compiled = {v: recc.compile(model, examples, tuning_db=None, precision="int8", threads=1, calibrate=c)
                    for v, c in variants.items()}
        entry: dict = {"accuracy": {v: {key: c.report["precision"]["accuracy"][key]
                                        for key in ("max_abs", "mean_abs", "top_k_agreement", "rows")}
                                    for v, c in compiled.items()},
                       "vs_eager_20x256": queries_vs_eager(model, compiled), "us": {}}
        for batch in BATCHES:
            inputs = model.example_inputs(batch, seed=7)
            samples: dict[str, list[float]] = {v: [] for v in compiled}
            for r in range(rounds):
                for v in (list(compiled) if r % 2 == 0 else list(compiled)[::-1]):
                    fn = compiled[v]
                    fn(*inputs)
                    calls, start = 0, time.perf_counter()
                    while time.perf_counter() - start < 0.1:
                        fn(*inputs)
                        calls += 1
                    samples[v].append((time.perf_counter() - start) / calls * 1e6)
            entry["us"][batch] = {v: round(statistics.median(s), 1) for v, s in samples.items()}
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--models", default="dlrm-rmc3,wnd")
    ap.add_argument("--calibrate", default="64,256,1024")
    ap.add_argument("--out", default="bench/results/precision/calibrate")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"machine": platform.processor() or platform.machine(), "threads": 1, "rounds": args.rounds,
              "layer": kernel_times(args.rounds), "narrow_layer": kernel_times(args.rounds, 1024, 32),
              "models": model_runs(args.models.split(","), [int(c) for c in args.calibrate.split(",")],
                                   max(3, args.rounds // 3))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
