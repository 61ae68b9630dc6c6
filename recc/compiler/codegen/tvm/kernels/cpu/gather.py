"""The gather machinery recc's embedding kernels share (embedding.py, embedding_offsets.py): the schedule
knobs, software prefetch, and how a row is split into register-sized passes.

Why the gather kernels are fast. The loop is memory bound: every lookup is a dependent `id -> row` load,
and a row that misses the caches costs more than the rest of the loop together. So the kernels
- accumulate one bag at a time in registers (vectorized over the dim, 64 floats a pass at most),
- software-prefetch (`prefetcht0` via TVM's `tirx.prefetch` builtin) one line per 128 bytes of the row
  `prefetch_distance` lookups ahead, continuing into the next bag's first ids near a bag's end,
- walk stacked tables table-major (all bags of table 0, then table 1, ...), so one table's hot rows
  hold the caches at a time, and prefetch the (strided) id list of the bag after next,
- run serially below `serial_below` lookups and in parallel above (a run-time `if` on m).

Measured on DLRM-RMC1 shapes (8 tables x 40,000 rows x 32 floats, 80 Zipf ids per bag; ratio = recc /
torch `embedding_bag` with offsets, lower is better; recc/bench/embedding_kernel.py runs the comparison):
- prefetch distance, batch 64 / 1024, 1 thread: none 1.13 / 1.43; 16 0.39 / 0.86; 24 0.37 / 0.76;
  32 0.43 / 0.74; 48 0.39 / 1.17 (beyond ~40 it falls off at batch 1024: 48 gave 1.16 with 2 threads,
  0.94 vs 0.75 at 400,000 rows); 24 is the default for 128-byte rows, 16 for 256-byte rows (RMC2's
  dim 64 at batch 1024: 8 1.11, 16 1.05, 32 1.27).
- one prefetch per 64-byte line instead of per 128 bytes: 0.82-0.83 instead of 0.74-0.76 at batch 1024
  (the adjacent line arrives anyway; the extra prefetches cost load slots).
- batch-major order over the stacked tables: 0.70 / 1.11 instead of 0.40 / 0.80 (all 8 tables'
  working sets at once).
- interleaving 2-4 bags per thread (each with its own accumulators) did not help; a per-table parallel
  loop (8 launches) was no better than the fused (table, bag) loop with 2 threads.
- serial vs parallel with 2 threads, cache-hot: 80 lookups 1.2 vs 2.7 us, 640 (RMC1 batch 1) 3.9 vs
  4.6 us; parallel wins from 1,280 (6.2 vs 5.8 us one table, 11.3 vs 6.1 us 8 tables) and 5,120 (67
  vs 31 us): hence serial below 1,024 lookups.
- scalars are bound with `T.meta_var` (inlined): a plain `x = expr` in tirx TVMScript becomes a
  one-element buffer that lowers to a TVMBackendAllocWorkspace call per bag (2x slower overall).
  Scratch accumulators use the default scope (a stack alloca kept in registers).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx

MODES = ("sum", "mean")
DIM_PASS = 64  # floats accumulated per pass over a bag (8 AVX2 registers)
PREFETCH_STRIDE = 32  # floats between two prefetches within a row (128 bytes)
PREFETCH_AHEAD_BYTES = 3072  # default prefetch distance in bytes of rows, within [16, 32] lookups


@dataclass(frozen=True)
class GatherSchedule:
    """Schedule knobs of the gather kernels (defaults measured on RMC1 shapes, see module docstring)."""

    # lookups ahead whose row is prefetched; None: ~3 KiB of rows ahead within [16, 32] lookups (24 rows of
    # 32 floats, 16 of 64; 40+ fell off a cliff at batch 1024); 0 turns prefetching off
    prefetch_distance: int | None = None
    prefetch_next_ids: bool = True  # prefetch the id list of the bag after next (strided in [m, T, L])
    serial_below: int = 1024  # kernels with fewer lookups than this run on the calling thread


DEFAULT_SCHEDULE = GatherSchedule()


def check_args(mode: str, dim: int, has_weights: bool = False) -> None:
    if mode not in MODES:
        raise ValueError(f"embedding_bag mode must be one of {MODES}, got {mode!r}")
    if has_weights and mode != "sum":
        raise ValueError(f"per_sample_weights need mode='sum' (as in torch), got mode={mode!r}")
    if dim < 1:
        raise ValueError(f"embedding dim must be >= 1, got {dim}")


def prefetch(address: tirx.PrimExpr) -> tirx.PrimExpr:
    """`prefetcht0 [address]`: read, high locality, data cache."""
    return tirx.call_intrin("void", "tirx.prefetch", address, 0, 3, 1)


def lookups_ahead(schedule: GatherSchedule, pass_width: int) -> int:
    """Prefetch distance in lookups for a pass over `pass_width` floats of each row."""
    if schedule.prefetch_distance is not None:
        return max(0, schedule.prefetch_distance)
    return max(16, min(32, PREFETCH_AHEAD_BYTES // (4 * pass_width)))


def dim_passes(dim: int) -> tuple[int, int]:
    """(width of a full pass, number of full passes) over the dim; a tail pass covers the rest. Passes
    are equal when they can be (dim 100: 2 x 50), as each distinct width is one more macro expansion."""
    count = -(-dim // DIM_PASS)
    width = dim // count if dim % count == 0 else min(dim, DIM_PASS)
    return width, dim // width


