"""recc's table-batched embedding-bag kernel vs torch's `embedding_bag` per table, side by side, one run.

    python bench/embedding_kernel.py --threads 1 --scale 0.01 [--model dlrm-rmc1] [--batches 1,64,1024]

Shapes are the DLRM config's (RMC1: 8 tables x 4,000,000 * scale rows x 32 floats, 80 ids per bag) and
ids are the models' Zipf-like ids (`recc.models.inputs.stacked_bag_ids`). Three systems compute the
same [B, T, D] sums:
- `torch-2d`: `F.embedding_bag(ids_t [B, L], table_t, mode="sum")` for each table t,
- `torch-offsets`: `F.embedding_bag(flat_ids_t [B*L], table_t, offsets [B], mode="sum")` for each table,
- `recc`: one call of the `batched_embedding_bag` kernel (ids [B, T*L] -> out [B, T*D], flat tables).
The tables are one torch allocation (torch gets row-slice views, the kernel the whole buffer through
DLPack), so both read the same memory. Torch gets its per-table ids pre-split and contiguous (the copy
is not timed: torch's best case). recc writes into a preallocated output, as in the Relax VM, whose
memory planning reuses storage (`tvm.runtime.empty` from Python alone costs ~17 us); torch allocates
its outputs, its normal path. The recc time includes the Python -> TVM FFI call (~1 us).

Timing: outputs are compared first; then each round measures every system in turn (the order rotates
between rounds, as the first system after another one pays for its caches and spinning threads), each
with 2 untimed warm-up calls and then a block of timed calls; the table reports the median and p90 of
all timed calls, GB/s of rows gathered (B*T*L*D*4 bytes / median) and recc / torch (< 1: recc faster).
Threads are pinned in both systems (torch.set_num_threads, TVM_NUM_THREADS). With 2 threads on 2 cores
the two thread pools interfere: torch's OpenMP workers spin for milliseconds after each torch call and
take the second core from TVM's worker (RMC1 batch 64: recc 237 us right after torch, 128 us alone);
OMP_WAIT_POLICY=PASSIVE removes that but slows torch 1.4-1.8x, so torch keeps its default and recc's
2-thread times here are pessimistic, and their p90s noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SYSTEMS = ("torch-2d", "torch-offsets", "recc")


def _time_block(fn: Callable[[], Any], calls: int) -> list[float]:
    fn()
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _systems(batch: int, rows: list[int], pooling: int, big, tables, kernel) -> tuple[dict[str, Callable], float]:
    """The three timed callables for one batch, after checking that they agree."""
    import torch
    import tvm
    from recc.models.inputs import stacked_bag_ids

    F = torch.nn.functional
    ids = stacked_bag_ids(batch, rows, pooling, seed=batch, stream="sparse_ids")
    per_table = [ids[:, t].contiguous() for t in range(len(rows))]
    flat = [x.reshape(-1) for x in per_table]
    offsets = torch.arange(batch, dtype=torch.int64) * pooling
    table_tvm = tvm.runtime.from_dlpack(big.reshape(-1))
    ids_tvm = tvm.runtime.tensor(ids.reshape(batch, -1).numpy())
    out = tvm.runtime.tensor(np.zeros((batch, len(rows) * big.shape[1]), np.float32))

    def recc() -> Any:
        kernel(table_tvm, ids_tvm, out)
        return out

    fns = {"torch-2d": lambda: [F.embedding_bag(per_table[t], tables[t], mode="sum") for t in range(len(rows))],
           "torch-offsets": lambda: [F.embedding_bag(flat[t], tables[t], offsets, mode="sum") for t in range(len(rows))],
           "recc": recc}
    want = torch.stack(fns["torch-2d"](), dim=1).numpy()
    error = max(float(np.abs(torch.stack(fns["torch-offsets"](), dim=1).numpy() - want).max()),
                float(np.abs(recc().numpy().reshape(want.shape) - want).max()))
    if error > 1e-4:
        raise AssertionError(f"batch {batch}: systems disagree (max abs error {error:.3g})")
    return fns, error


def run(model: str, scale: float, batches: list[int], threads: int, rounds: int) -> list[dict[str, Any]]:
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM starts its thread pool
    import torch
    import tvm
    from recc.compiler.codegen.tvm.kernels.cpu.embedding import Segment, batched_embedding_bag
    from recc.compiler.codegen.tvm.target import resolve_target
    from recc.models.dlrm import RMC1, RMC2, RMC3
    from recc.models.rec_model import scaled_rows

    torch.set_num_threads(threads)
    tvm.get_global_func("runtime.config_threadpool")(0, threads)
    config = {c.name: c for c in (RMC1, RMC2, RMC3)}[model]
    rows = [scaled_rows(config.rows, scale)] * config.tables
    dim, pooling = config.dim, config.pooling
    torch.manual_seed(0)
    big = torch.randn(sum(rows), dim)
    starts = np.cumsum([0] + rows)
    tables = [big[starts[t]:starts[t + 1]] for t in range(len(rows))]
    segment = Segment(tuple(rows), dim, pooling, tuple(t * pooling for t in range(len(rows))), 0, 0)
    func = batched_embedding_bag((segment,), len(rows) * pooling, "sum")
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=resolve_target("cpu").to_tvm())
    results = []
    for batch in batches:
        fns, error = _systems(batch, rows, pooling, big, tables, lib["main"])
        estimate = {name: np.median(_time_block(fn, 3)) for name, fn in fns.items()}
        calls = {name: int(np.clip(5e-3 / max(t, 1e-7), 5, 200)) for name, t in estimate.items()}  # ~5 ms blocks
        times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
        for r in range(rounds):
            for name in SYSTEMS[r % 3:] + SYSTEMS[:r % 3]:
                times[name] += _time_block(fns[name], calls[name])
        gathered = batch * len(rows) * pooling * dim * 4
        row: dict[str, Any] = {"model": model, "scale": scale, "batch": batch, "threads": threads,
                               "tables": len(rows), "rows": rows[0], "dim": dim, "pooling": pooling,
                               "max_abs_error": error}
        for name in SYSTEMS:
            row[f"{name}_median_us"] = float(np.median(times[name]) * 1e6)
            row[f"{name}_p90_us"] = float(np.percentile(times[name], 90) * 1e6)
            row[f"{name}_gb_s"] = gathered / (row[f"{name}_median_us"] * 1e3)
        row["recc_over_torch_2d"] = row["recc_median_us"] / row["torch-2d_median_us"]
        row["recc_over_torch_offsets"] = row["recc_median_us"] / row["torch-offsets_median_us"]
        results.append(row)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| batch | threads | system | median us | p90 us | GB/s | recc / this |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for name in SYSTEMS:
            ratio = {"torch-2d": f"**{r['recc_over_torch_2d']:.2f}**",
                     "torch-offsets": f"**{r['recc_over_torch_offsets']:.2f}**", "recc": ""}[name]
            lines.append(f"| {r['batch']} | {r['threads']} | {name} | {r[f'{name}_median_us']:.1f} "
                         f"| {r[f'{name}_p90_us']:.1f} | {r[f'{name}_gb_s']:.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dlrm-rmc1", help="a DLRM config: dlrm-rmc1, dlrm-rmc2, dlrm-rmc3")
    p.add_argument("--scale", type=float, default=0.01, help="fraction of the config's rows per table")
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    results = run(args.model, args.scale, [int(b) for b in args.batches.split(",")], args.threads, args.rounds)
    import torch
    import tvm

    r = results[0]
    print(f"{args.model} scale {args.scale}: {r['tables']} tables x {r['rows']} rows x {r['dim']} floats, "
          f"{r['pooling']} ids per bag; threads {args.threads}; {platform.machine()}, torch {torch.__version__}, "
          f"tvm {tvm.__version__}; max abs error {max(x['max_abs_error'] for x in results):.1g}\n")
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
