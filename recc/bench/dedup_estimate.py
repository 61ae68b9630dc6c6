"""Would de-duplicating embedding ids pay on this CPU? An upper bound, measured side by side in one run.

    python -m recc.bench.dedup_estimate --model dlrm-rmc1 --scale 0.1 --batches 64,1024 --threads 1

Dedup gathers each distinct (table, id) row once and reuses it for every bag that names it. Its best
case is the time of gathering only the distinct rows, plus the time to find them. For each batch of the
models' Zipf ids this runs, with recc's `batched_embedding_bag` kernel and one thread:
- `all`: the kernel on the real ids (every lookup gathers its row: what recc does),
- `unique-only`: the same kernel on bags in which every repeated id is replaced by a fresh, never-used
  row of the same table (same number of lookups, but no row is fetched twice and none is cache-hot
  from an earlier occurrence): a *lower* bound of gather time if repeats cost nothing extra,
- `distinct-rows`: the kernel gathering only the U distinct rows (U lookups): what a dedup'ed gather
  would fetch, without the reduction over the inverse index it would still need,
- `find-distinct`: `np.unique(..., return_inverse=True)` per table on the ids (the cheapest way we
  know to find them on a CPU; a TIR kernel would need a sort or hash of its own).
Dedup pays only if distinct-rows + find-distinct < all. Repeats are reported as the fraction of
lookups whose (table, id) occurred earlier in the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_us(fn, calls: int = 30) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def _gather(lib, flat, ids: np.ndarray, out_width: int):
    import tvm

    ids_t = tvm.runtime.tensor(np.ascontiguousarray(ids))
    out = tvm.runtime.tensor(np.zeros((ids.shape[0], out_width), np.float32))
    return lambda: lib(flat, ids_t, out)


def run(model: str, scale: float, batches: list[int]) -> list[dict[str, Any]]:
    os.environ["TVM_NUM_THREADS"] = "1"
    import torch
    import tvm
    from recc.compiler.codegen.tvm.kernels.cpu.embedding import Segment, batched_embedding_bag
    from recc.compiler.codegen.tvm.target import resolve_target
    from recc.models.dlrm import RMC1, RMC2, RMC3
    from recc.models.inputs import stacked_bag_ids
    from recc.models.rec_model import scaled_rows

    tvm.get_global_func("runtime.config_threadpool")(0, 1)
    config = {c.name: c for c in (RMC1, RMC2, RMC3)}[model]
    rows, tables, dim, pooling = scaled_rows(config.rows, scale), config.tables, config.dim, config.pooling
    flat = tvm.runtime.from_dlpack(torch.randn(rows * tables * dim))

    def kernel(bag: int):
        seg = Segment((rows,) * tables, dim, bag, tuple(t * bag for t in range(tables)), 0, 0)
        return tvm.compile(tvm.IRModule({"main": batched_embedding_bag((seg,), tables * bag, "sum")
                                         .with_attr("global_symbol", "main")}), target=resolve_target("cpu").to_tvm())["main"]

    bags, one = kernel(pooling), kernel(1)
    results = []
    for batch in batches:
        ids = stacked_bag_ids(batch, [rows] * tables, pooling, seed=batch, stream="sparse_ids").numpy()  # [B, T, L]
        fresh, distinct, repeats = ids.copy(), [], 0
        for t in range(tables):
            column = ids[:, t].reshape(-1)
            unique, first = np.unique(column, return_index=True)
            is_repeat = np.ones(column.size, bool)
            is_repeat[first] = False
            repeats += int(is_repeat.sum())
            unused = np.setdiff1d(np.arange(rows), unique)[:int(is_repeat.sum())]
            replaced = column.copy()
            replaced[np.flatnonzero(is_repeat)[:unused.size]] = unused
            fresh[:, t] = replaced.reshape(batch, pooling)
            distinct.append(unique)
        most = max(u.size for u in distinct)
        distinct_ids = np.stack([np.resize(u, most) for u in distinct], axis=1)  # [U, T]: one row per lookup
        row = {"model": model, "scale": scale, "batch": batch, "threads": 1, "rows": rows, "tables": tables,
               "dim": dim, "pooling": pooling, "repeat_fraction": repeats / ids.size,
               "all_us": _median_us(_gather(bags, flat, ids.reshape(batch, -1), tables * dim)),
               "unique_only_us": _median_us(_gather(bags, flat, fresh.reshape(batch, -1), tables * dim)),
               "distinct_rows_us": _median_us(_gather(one, flat, distinct_ids, tables * dim)),
               "find_distinct_us": _median_us(lambda: [np.unique(ids[:, t], return_inverse=True) for t in range(tables)])}
        row["dedup_best_case_us"] = row["distinct_rows_us"] + row["find_distinct_us"]
        row["dedup_pays"] = row["dedup_best_case_us"] < row["all_us"]
        results.append(row)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dlrm-rmc1")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--batches", default="64,1024")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = run(args.model, args.scale, [int(b) for b in args.batches.split(",")])
    print("| model | batch | repeated lookups | all us | unique-only us | distinct rows us | find distinct us "
          "| dedup best case / all |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['batch']} | {r['repeat_fraction']:.0%} | {r['all_us']:.0f} | {r['unique_only_us']:.0f} "
              f"| {r['distinct_rows_us']:.0f} | {r['find_distinct_us']:.0f} | {r['dedup_best_case_us'] / r['all_us']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
