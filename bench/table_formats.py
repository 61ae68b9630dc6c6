"""The batched lookup's table formats side by side: fp32, bf16 (2 bytes a value) and 8-bit row-wise (1 byte
a value + an fp16 scale and bias a row), the tables alone changed (every dense layer kept fp32), for the
embedding-bound models at a table size that does not fit this CPU's last-level cache.

Each format is a separate recc.compile of the same model (precision bf16 / int8 with every dense layer in
--keep-fp32; fp32 as is); calls interleaved round by round in one process, one thread, medians. What an
out-of-cache gather waits for is cache lines, not bytes: a row's lines are reported beside its bytes (a
row not aligned to 64 bytes straddles two lines part of the time).

    PYTHONPATH=. python bench/table_formats.py [--models dlrm-rmc1,dlrm-rmc2] [--scale 0.1] [--batches 1,64,256,1024]

Results: bench/results/precision/table-formats-scale0.1/ and -scale0.01/ (results.json, results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TVM_NUM_THREADS", "1")


def variants(model: Any, examples: list[Any]) -> dict[str, Any]:
    import torch

    import recc

    dense = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    out = {}
    for label, precision in (("fp32", "fp32"), ("bf16 tables", "bf16"), ("int8 tables", "int8")):
        keep = dense if precision != "fp32" else []
        out[label] = recc.compile(model, examples, tuning_db=None, threads=1, precision=precision, keep_fp32=keep)
        layers = out[label].report.get("precision", {}).get("layers", {})
        assert not layers, f"{label}: dense layers were reduced too: {layers}"
    return out


def time_cell(compiled: dict[str, Any], inputs: list[Any], rounds: int, seconds: float) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in compiled}
    for _ in range(rounds):
        for label, fn in compiled.items():
            fn(*inputs)
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / rounds:
                fn(*inputs)
                calls += 1
            times[label].append((time.perf_counter() - start) / calls)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    import torch

    from recc.bench.machine import describe_machine
    from recc.compiler.quantize import row_lines, rowwise_row_bytes
    from recc.models import create

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="dlrm-rmc1,dlrm-rmc2")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--batches", default="1,64,256,1024")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per format and cell")
    parser.add_argument("--out", type=Path, default=Path("bench/results/precision/table-formats"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"command": "PYTHONPATH=. python bench/table_formats.py " + shlex.join(sys.argv[1:]),
                               "machine": describe_machine(), "scale": args.scale, "threads": 1, "cells": []}
    lines = ["# Table formats: fp32 vs bf16 vs 8-bit row-wise tables (dense layers fp32 in all)", "",
             f"`{results['command']}`; {results['machine'].get('cpu_model', '')}, 1 thread, scale {args.scale:g}.", "",
             "| model | dim | row bytes fp32/bf16/int8 | lines a row | batch | fp32 us | bf16 tables | int8 tables |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for name in args.models.split(","):
        model = create(name, scale=args.scale, seed=0)
        dim = next(m for m in model.modules() if isinstance(m, torch.nn.EmbeddingBag)).embedding_dim
        sizes = (4 * dim, 2 * dim, rowwise_row_bytes(dim))
        compiled = variants(model, model.example_inputs(4, seed=0))
        for batch in (int(b) for b in args.batches.split(",")):
            us = time_cell(compiled, model.example_inputs(batch, seed=batch), args.rounds, args.seconds)
            results["cells"].append({"model": name, "batch": batch, "dim": dim, "row_bytes": sizes, "us": us})
            lines.append(f"| {name} | {dim} | {'/'.join(map(str, sizes))} | "
                         f"{'/'.join(f'{row_lines(b):.2f}' for b in sizes)} | {batch} | {us['fp32']:.0f} | "
                         f"{us['fp32'] / us['bf16 tables']:.2f}x | {us['fp32'] / us['int8 tables']:.2f}x |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
