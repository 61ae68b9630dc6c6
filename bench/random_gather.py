"""This machine's achievable random-row read rate: the physical limit an out-of-cache embedding gather is
measured against (issue 20). A table of `rows x width` float32 (a model's row width: 32 for RMC1/RMC3/DIN,
64 for RMC2), uniform random row ids, one thread running a small C loop (gcc -O3 -march=native, loaded with
ctypes) that sums row `ids[i]` into its bag's output (bags of 80 rows, as RMC1's; the output stays in cache)
while prefetching row `ids[i + distance]`: no dependence between rows,
so with a prefetch distance the core keeps that many row reads in flight; the best distance of
`--distances` is the limit. Tables from in-cache sizes to the models' full size (4 GiB; this CPU reports a
480 MiB L3), each in ordinary 4 KiB pages and in anonymous memory advised for transparent huge pages
(recc.runtime.memory.huge_page_buffer; whether the kernel granted them is read from /proc/self/smaps; numpy
itself advises huge pages for large np.empty buffers, so both kinds usually get them).
Reported: rows/s and GB/s of row bytes read, best of `--repeats` passes of `--reads` fresh random rows.

    PYTHONPATH=. python bench/random_gather.py [--sizes-mib 4,32,2048,4096] [--widths 32,64]

Results: bench/results/gather/random-gather.json (and .md).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recc.bench.machine import describe_machine  # noqa: E402
from recc.runtime.memory import huge_page_buffer, huge_page_bytes, thp_setting  # noqa: E402


def table(nbytes: int, huge: bool) -> np.ndarray:
    """A float32 table of `nbytes`, every page written (faulted in) before timing."""
    if huge:
        array = huge_page_buffer(nbytes).view(np.float32)
    else:
        array = np.empty(nbytes // 4, np.float32)
    array[:] = 1.0
    return array


KERNEL = r"""
#include <stdint.h>
void gather(const float *table, const int64_t *ids, int64_t n, int64_t width, float *out, int64_t dist,
            int64_t bag) {
    for (int64_t i = 0; i < n; i++) {
        if (dist && i + dist < n) {
            const char *p = (const char *)(table + ids[i + dist] * width);
            for (int64_t b = 0; b < width * 4; b += 64) __builtin_prefetch(p + b, 0, 0);
        }
        const float *row = table + ids[i] * width;
        float *acc = out + (i / bag) * width;
        for (int64_t j = 0; j < width; j++) acc[j] += row[j];
    }
}
"""


BAG = 80  # rows summed per output row, as RMC1's bags: the reads dominate, not the writes


def kernel() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="recc-gather-"))
    (folder / "gather.c").write_text(KERNEL)
    subprocess.run(["gcc", "-O3", "-march=native", "-shared", "-fPIC", "-o", str(folder / "gather.so"),
                    str(folder / "gather.c")], check=True)
    fn = ctypes.CDLL(str(folder / "gather.so")).gather
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                   ctypes.c_int64]
    return fn


def measure(fn: Any, flat: np.ndarray, width: int, reads: int, repeats: int, distances: list[int]) -> dict[str, Any]:
    rows = flat.size // width
    rng = np.random.default_rng(0)
    out = np.zeros((reads // BAG + 1, width), np.float32)
    best: dict[int, float] = {}
    for _ in range(repeats):
        for dist in distances:
            ids = rng.integers(0, rows, reads)  # fresh ids each pass: no row reused from the last one
            start = time.perf_counter()
            fn(flat.ctypes.data, ids.ctypes.data, reads, width, out.ctypes.data, dist, BAG)
            best[dist] = min(best.get(dist, float("inf")), time.perf_counter() - start)
    dist = min(best, key=best.__getitem__)
    rate = reads / best[dist]
    return {"rows": rows, "rows_per_s": round(rate), "gb_per_s": round(rate * width * 4 / 1e9, 3),
            "ns_per_row": round(1e9 / rate, 2), "best_distance": dist,
            "by_distance_ns_per_row": {d: round(t / reads * 1e9, 2) for d, t in best.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes-mib", default="4,32,2048,4096")
    p.add_argument("--distances", default="0,4,16,64", help="prefetch distances in rows (0: none)")
    p.add_argument("--widths", default="32,64")
    p.add_argument("--reads", type=int, default=4_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench/results/gather/random-gather"))
    args = p.parse_args()
    cells, fn, distances = [], kernel(), [int(x) for x in args.distances.split(",")]
    for mib in (int(x) for x in args.sizes_mib.split(",")):
        for huge in (False, True):
            flat = table(mib << 20, huge)
            granted = huge_page_bytes(flat)  # measured for both: 4 KiB-page memory could be given THP too
            for width in (int(x) for x in args.widths.split(",")):
                cell = {"table_mib": mib, "width": width, "huge_pages_requested": huge,
                        "huge_page_bytes_granted": granted, **measure(fn, flat, width, args.reads, args.repeats, distances)}
                print(json.dumps(cell), flush=True)
                cells.append(cell)
            del flat
    result = {"command": "PYTHONPATH=. python bench/random_gather.py " + shlex.join(sys.argv[1:]),
              "machine": describe_machine(), "thp_setting": thp_setting(), "threads": 1,
              "method": "C gather-sum (bags of 80) with software prefetch (KERNEL), uniform random ids, best distance and repeat", "cells": cells}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = ["| table MiB | width | memory | THP granted | rows/s | GB/s | ns/row |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['table_mib']} | {c['width']} | {'huge_page_buffer' if c['huge_pages_requested'] else 'np.empty'}"
              f" | {c['huge_page_bytes_granted'] >> 20} MiB | {c['rows_per_s']:,} | {c['gb_per_s']} | {c['ns_per_row']} |"
              for c in cells]
    out.with_suffix(".md").write_text(f"# Random-row gather limit\n\n`{result['command']}` on "
                                      f"{result['machine']['cpu_model']}, 1 thread, THP {result['thp_setting']}, "
                                      f"commit {result['machine']['git_commit']}\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
