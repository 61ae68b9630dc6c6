"""Compiled recc vs eager PyTorch on a built-in model, side by side in one run.

    python -m recc.bench.compare_eager --model dlrm-rmc1 --scale 0.01 --batches 1,64,1024 --threads 1

For each batch: outputs are checked equal first (max abs error printed), then rounds alternate between
the two systems (warm-up first), each round timing `--repeat` calls; the table shows the median over all
calls, p90, and the ratio eager/recc (> 1 means recc is faster). Threads are pinned in both systems.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def _time_calls(fn, inputs, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*inputs)
        out.append(time.perf_counter() - start)
    return out


def run(model_name: str, scale: float, batches: list[int], threads: int, rounds: int, repeat: int) -> list[dict]:
    import recc
    from recc.models import create

    torch.set_num_threads(threads)
    model = create(model_name, scale=scale, seed=0)
    start = time.perf_counter()
    compiled = recc.compile(model, model.example_inputs(4, seed=0), name=model_name, threads=threads)
    compile_s = time.perf_counter() - start
    results = []
    for batch in batches:
        inputs = model.example_inputs(batch, seed=batch)
        with torch.inference_mode():
            error = float((compiled(*inputs) - model(*inputs)).abs().max())
            eager, ours = [], []
            for _ in range(3):
                model(*inputs), compiled(*inputs)
            for _ in range(rounds):
                eager += _time_calls(model, inputs, repeat)
                ours += _time_calls(compiled, inputs, repeat)
        row = {"model": model_name, "scale": scale, "batch": batch, "threads": threads, "max_abs_error": error,
               "eager_median_us": float(np.median(eager) * 1e6), "recc_median_us": float(np.median(ours) * 1e6),
               "eager_p90_us": float(np.percentile(eager, 90) * 1e6), "recc_p90_us": float(np.percentile(ours, 90) * 1e6),
               "compile_s": round(compile_s, 2)}
        row["speedup"] = row["eager_median_us"] / row["recc_median_us"]
        results.append(row)
        print(f"batch {batch:5d}: eager {row['eager_median_us']:9.1f} us  recc {row['recc_median_us']:9.1f} us  "
              f"speedup {row['speedup']:.2f}x  (max abs err {error:.2g})", flush=True)
    return results


def markdown(results: list[dict]) -> str:
    lines = ["| model | batch | threads | eager median us | recc median us | eager p90 | recc p90 | eager/recc | max abs err |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['eager_median_us']:.1f} | {r['recc_median_us']:.1f} "
                     f"| {r['eager_p90_us']:.1f} | {r['recc_p90_us']:.1f} | **{r['speedup']:.2f}x** | {r['max_abs_error']:.1g} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dlrm-rmc1")
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--out", type=Path, help="write JSON and markdown here")
    args = p.parse_args()
    results = run(args.model, args.scale, [int(b) for b in args.batches.split(",")], args.threads, args.rounds, args.repeat)
    table = markdown(results)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}\n")
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.model}-t{args.threads}.json").write_text(json.dumps(results, indent=2))
        (args.out / f"{args.model}-t{args.threads}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
