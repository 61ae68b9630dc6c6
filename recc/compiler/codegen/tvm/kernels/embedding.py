"""Embedding gather-reduce kernels: hand-written, block-free TIR; one build serves every batch size m.

    embedding_bag(table, ids [, per_sample_weights]) -> out[b] = sum_j w[b, j] * table[ids[b, j]]  (or mean)

Kernels (argument order = PrimFunc parameter order; tables are runtime buffers, never constants):
    embedding_bag_fixed(rows, dim, bag_size, mode, has_weights)
        -> (table[rows, D], ids[m, L], [w[m, L]], out[m, D])
    batched_embedding_bag(segments, ids_width, mode, has_weights=False)
        -> (weights[total] flat, ids[m, C], [w[m, C]], out[m, sum of dims])
    embedding_bag_offsets(rows, dim, mode, has_weights, include_last_offset)
        -> (table[rows, D], ids[nnz], offsets[m] or [m + 1], [w[nnz]], out[m, D])
    embedding_lookup(rows, dim) -> (table[rows, D], ids[m], out[m, D])
each with an optional `schedule: GatherSchedule` last.

Why it is fast. The loop is memory bound: every lookup is a dependent `id -> row` load, and a row that
misses the caches costs more than the rest of the loop together. So the kernels
- accumulate one bag at a time in registers (vectorized over the dim, 64 floats a pass at most),
- software-prefetch (`prefetcht0` via TVM's `tirx.prefetch` builtin) one line per 128 bytes of the row
  `prefetch_distance` lookups ahead, continuing into the next bag's first ids near a bag's end,
- walk stacked tables table-major (all bags of table 0, then table 1, ...), so one table's hot rows
  hold the caches at a time, and prefetch the (strided) id list of the bag after next,
- run serially below `serial_below` lookups and in parallel above (a run-time `if` on m).

Measured on DLRM-RMC1 shapes (8 tables x 40,000 rows x 32 floats, 80 Zipf ids per bag; ratio = recc /
torch `embedding_bag` with offsets, lower is better; bench/embedding_kernel.py runs the comparison):
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

Ids and offsets are NOT bounds-checked here: the check kernel at the top of the compiled function
(kernels/checks.py) or the runtime checks every id against its table (and the
offsets) before calling; an out-of-range id reads arbitrary memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T

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


def _check(mode: str, dim: int, has_weights: bool = False) -> None:
    if mode not in MODES:
        raise ValueError(f"embedding_bag mode must be one of {MODES}, got {mode!r}")
    if has_weights and mode != "sum":
        raise ValueError(f"per_sample_weights need mode='sum' (as in torch), got mode={mode!r}")
    if dim < 1:
        raise ValueError(f"embedding dim must be >= 1, got {dim}")


def _prefetch(address: tirx.PrimExpr) -> tirx.PrimExpr:
    """`prefetcht0 [address]`: read, high locality, data cache."""
    return tirx.call_intrin("void", "tirx.prefetch", address, 0, 3, 1)


def _distance(schedule: GatherSchedule, pass_width: int) -> int:
    """Prefetch distance in lookups for a pass over `pass_width` floats of each row."""
    if schedule.prefetch_distance is not None:
        return max(0, schedule.prefetch_distance)
    return max(16, min(32, PREFETCH_AHEAD_BYTES // (4 * pass_width)))


def _per_table(values: tuple[int, ...], t: tirx.PrimExpr) -> tirx.PrimExpr:
    """values[t] for a run-time table index t: `v0 + t * step` when the values are evenly spaced (equal
    row counts, consecutive id columns), else a select chain over the compile-time values. Evaluated once
    per bag, not per lookup."""
    if len(values) == 1:
        return tirx.const(values[0], "int64")
    step = values[1] - values[0]
    if all(values[i] - values[i - 1] == step for i in range(1, len(values))):
        return tirx.const(values[0], "int64") + t * tirx.const(step, "int64")
    expr = tirx.const(values[-1], "int64")
    for i in range(len(values) - 2, -1, -1):
        expr = tirx.Select(t == tirx.const(i, "int64"), tirx.const(values[i], "int64"), expr)
    return expr


def _passes(dim: int) -> tuple[int, int]:
    """(width of a full pass, number of full passes) over the dim; a tail pass covers the rest. Passes
    are equal when they can be (dim 100: 2 x 50), as each distinct width is one more macro expansion."""
    count = -(-dim // DIM_PASS)
    width = dim // count if dim % count == 0 else min(dim, DIM_PASS)
    return width, dim // width


@dataclass(frozen=True)
class Segment:
    """Tables of a fixed-layout gather that share dim and bag size, in one kernel.

    Table t of the segment has `table_rows[t]` rows; its rows start at row `sum(table_rows[:t])` of a
    [rows, dim] table buffer, or, when `weight_offset` is set, at element
    `weight_offset + sum(table_rows[:t]) * dim` of a flat weights buffer (tables of several dims side by
    side, FBGEMM's table-batched layout). Its bag of `bag_size` ids is columns
    [id_cols[t], id_cols[t] + bag_size) of ids [m, C] (tables may share columns), and its result is
    columns [out_col + t * dim, out_col + (t + 1) * dim) of out [m, OUT]."""

    table_rows: tuple[int, ...]
    dim: int
    bag_size: int
    id_cols: tuple[int, ...]
    out_col: int = 0
    weight_offset: int | None = None

    def __post_init__(self) -> None:
        if not self.table_rows or min(self.table_rows) < 1:
            raise ValueError(f"a gather needs at least one table, each with >= 1 row, got {self.table_rows}")
        if len(self.id_cols) != len(self.table_rows):
            raise ValueError(f"{len(self.table_rows)} tables but {len(self.id_cols)} id columns")

    @property
    def row_starts(self) -> tuple[int, ...]:
        return tuple(sum(self.table_rows[:i]) for i in range(len(self.table_rows)))


def _segment_pass(seg: Segment, mode: str, has_weights: bool, PF: int):
    """The macro accumulating dims [c0, c0 + width) of bag (b, t) of `seg` in registers, prefetching the
    row PF lookups ahead (in the next bag (bn, tn) during the last PF lookups)."""
    L, D, flat = seg.bag_size, seg.dim, seg.weight_offset is not None
    mean = mode == "mean" and L > 0

    def row(table, start, idv, c):
        if flat:
            return table[tirx.const(seg.weight_offset, "int64") + (start + idv) * tirx.const(D, "int64") + c]
        return table[start + idv, c]

    @T.macro
    def one_pass(table, ids, w, out, b, t, bn, tn, c0, width):
        start = T.meta_var(_per_table(seg.row_starts, t))
        start_next = T.meta_var(_per_table(seg.row_starts, tn))
        col = T.meta_var(_per_table(seg.id_cols, t))
        col_next = T.meta_var(_per_table(seg.id_cols, tn))
        acc = T.alloc_buffer((width,), "float32")
        for d in T.vectorized(width):
            acc[d] = T.float32(0)
        for j in range(L - PF):
            if PF > 0:
                for q in T.unroll(-(-width // PREFETCH_STRIDE)):
                    T.evaluate(_prefetch(T.address_of(
                        row(table, start, ids[b, col + j + PF], c0 + q * PREFETCH_STRIDE))))
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d) * w[b, col + j]
                else:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d)
        for j in range(L - PF, L):
            for q in T.unroll(-(-width // PREFETCH_STRIDE)):
                T.evaluate(_prefetch(T.address_of(
                    row(table, start_next, ids[bn, col_next + j + PF - L], c0 + q * PREFETCH_STRIDE))))
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d) * w[b, col + j]
                else:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d)
        for d in T.vectorized(width):
            out[b, seg.out_col + t * D + c0 + d] = acc[d] / T.float32(L) if mean else acc[d]

    return one_pass


def _segment_bag(seg: Segment, mode: str, has_weights: bool, schedule: GatherSchedule):
    """The macro computing bag number g (table-major: g = t * m + b) of `seg`."""
    NT, D, L = len(seg.table_rows), seg.dim, seg.bag_size
    W, NP = _passes(D)
    TAIL = D - W * NP
    PF = min(_distance(schedule, W), L)
    ID_LINES = (L * 8 + 63) // 64
    prefetch_ids = schedule.prefetch_next_ids and NT > 1 and PF > 0
    one_pass = _segment_pass(seg, mode, has_weights, PF)

    def bag_of(g, m):
        if NT == 1:
            return g, tirx.const(0, "int64")
        return tirx.truncmod(g, m), tirx.truncdiv(g, m)

    def ahead(m, g, k):
        """(b, t) of the bag k positions later in walk order, clamped to the segment's last bag."""
        return bag_of(tirx.min(g + k, m * NT - 1), m)

    @T.macro
    def one_bag(table, ids, w, out, m, g):
        b = T.meta_var(bag_of(g, m)[0])
        t = T.meta_var(bag_of(g, m)[1])
        bn = T.meta_var(ahead(m, g, 1)[0])
        tn = T.meta_var(ahead(m, g, 1)[1])
        if prefetch_ids:  # table-major order strides through ids: fetch the bag after next's ids
            for q in T.unroll(ID_LINES):
                T.evaluate(_prefetch(T.address_of(
                    ids[ahead(m, g, 2)[0], _per_table(seg.id_cols, ahead(m, g, 2)[1]) + q * 8])))
        for c in range(NP):
            one_pass(table, ids, w, out, b, t, bn, tn, c * W, W)
        if TAIL > 0:
            one_pass(table, ids, w, out, b, t, bn, tn, NP * W, TAIL)

    return one_bag


def _dispatch(segments: tuple[Segment, ...], mode: str, has_weights: bool, schedule: GatherSchedule):
    """The macro computing bag g of the whole gather: segment after segment, each table-major. A chain of
    run-time `if`s on g picks the segment (segments are few: one per distinct (dim, bag size))."""
    bags = [_segment_bag(seg, mode, has_weights, schedule) for seg in segments]
    firsts = [sum(len(s.table_rows) for s in segments[:i]) for i in range(len(segments))]

    def leaf(i: int):
        @T.macro
        def last(table, ids, w, out, m, g):
            bags[i](table, ids, w, out, m, g - m * firsts[i])
        return last

    def branch(i: int, rest):
        ends = firsts[i] + len(segments[i].table_rows)

        @T.macro
        def pick(table, ids, w, out, m, g):
            if g < m * ends:
                bags[i](table, ids, w, out, m, g - m * firsts[i])
            else:
                rest(table, ids, w, out, m, g)
        return pick

    chain = leaf(len(segments) - 1)
    for i in range(len(segments) - 2, -1, -1):
        chain = branch(i, chain)
    return chain


def _gather_kernel(segments: tuple[Segment, ...], table_shape: tuple[int, ...], ids_width: int, out_width: int,
                   mode: str, has_weights: bool, schedule: GatherSchedule) -> tirx.PrimFunc:
    """The PrimFunc `(table, ids[m, ids_width], [w[m, ids_width]], out[m, out_width])` walking every bag
    of every segment, serially for small m (decided at compile time as a largest serial m: a branch
    that implies m == 0 makes TVM's simplifier reject the `% m` inside it), else in parallel."""
    for seg in segments:
        _check(mode, seg.dim, has_weights)
    tables = sum(len(s.table_rows) for s in segments)
    lookups_per_row = sum(len(s.table_rows) * s.bag_size for s in segments)
    serial_max_m = (schedule.serial_below - 1) // max(lookups_per_row, 1)
    bag = _dispatch(segments, mode, has_weights, schedule)
    C, OUT = ids_width, out_width

    @T.macro
    def walk(table, ids, w, out, m):
        if serial_max_m > 0:
            if m <= serial_max_m:
                for g in range(m * tables):
                    bag(table, ids, w, out, m, g)
            else:
                for g in T.parallel(m * tables):
                    bag(table, ids, w, out, m, g)
        else:
            for g in T.parallel(m * tables):
                bag(table, ids, w, out, m, g)

    if has_weights:
        @T.prim_func(private=True)
        def gather_weighted(table: T.Buffer(table_shape, "float32"), var_ids: T.handle, var_w: T.handle,
                            var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, C), "int64")
            w = T.match_buffer(var_w, (m, C), "float32")
            out = T.match_buffer(var_out, (m, OUT), "float32")
            walk(table, ids, w, out, m)

        return gather_weighted

    @T.prim_func(private=True)
    def gather(table: T.Buffer(table_shape, "float32"), var_ids: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        ids = T.match_buffer(var_ids, (m, C), "int64")
        out = T.match_buffer(var_out, (m, OUT), "float32")
        walk(table, ids, ids, out, m)

    return gather


def embedding_bag_fixed(rows: int, dim: int, bag_size: int, mode: str, has_weights: bool,
                        schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """PrimFunc `(table[rows, dim] f32, ids[m, bag_size] i64, [weights[m, bag_size] f32], out[m, dim] f32)`
    for any batch m: `out[b] = reduce_j weights[b, j] * table[ids[b, j]]`, reduce = sum or mean (/ bag_size).
    Ids are not bounds-checked (the runtime checks them)."""
    seg = Segment((rows,), dim, bag_size, (0,))
    return _gather_kernel((seg,), (rows, dim), bag_size, dim, mode, has_weights, schedule)


def batched_embedding_bag(segments: tuple[Segment, ...], ids_width: int, mode: str, has_weights: bool = False,
                          schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """Many tables, of any rows and dims, in one kernel. PrimFunc `(weights[total] f32 flat,
    ids[m, ids_width] i64, [w[m, ids_width] f32], out[m, sum of dims] f32)`; each segment's
    `weight_offset` places its tables in the flat weights and its `out_col` its results in `out`, which is
    the concatenation of all bags' results (what DLRM's and Wide&Deep's concat would build). Ids are local
    to their table and not bounds-checked (the runtime checks them)."""
    if not segments or any(s.weight_offset is None for s in segments):
        raise ValueError("batched_embedding_bag needs segments placed in flat weights (weight_offset set)")
    total = max(s.weight_offset + sum(s.table_rows) * s.dim for s in segments)
    out_width = max(s.out_col + len(s.table_rows) * s.dim for s in segments)
    return _gather_kernel(tuple(segments), (total,), ids_width, out_width, mode, has_weights, schedule)


def embedding_bag_offsets(rows: int, dim: int, mode: str, has_weights: bool, include_last_offset: bool,
                          schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """PrimFunc `(table[rows, dim] f32, ids[nnz] i64, offsets[m] i64 (m + 1 with include_last_offset),
    [weights[nnz] f32], out[m, dim] f32)` with torch semantics: bag b is `ids[offsets[b]:offsets[b + 1]]`,
    the last bag runs to nnz unless include_last_offset (then offsets[m] ends it and later ids are
    ignored, as torch's sum does; torch's mean would still count them in the last bag's size,
    pytorch#52851, so callers should require offsets[m] == nnz); an empty bag gives zeros, in mean mode
    too. The row `prefetch_distance` ids ahead in the flat id list is prefetched, whichever bag it
    belongs to. Ids are not bounds-checked, nor are offsets checked to start at 0 and not decrease (the
    runtime checks both)."""
    _check(mode, dim, has_weights)
    D = dim
    W, NP = _passes(D)
    PF = _distance(schedule, W)
    TAIL = D - W * NP
    mean = mode == "mean"
    serial_below = schedule.serial_below

    def bag_end(offsets, ids, b, m):
        if include_last_offset:
            return offsets[b + 1]
        return tirx.Select(b + 1 < m, offsets[tirx.min(b + 1, m - 1)], ids.shape[0])

    @T.macro
    def one_pass(table, ids, offsets, w, out, b, m, c0, width):
        start = T.meta_var(offsets[b])
        end = T.meta_var(bag_end(offsets, ids, b, m))
        nnz = T.meta_var(ids.shape[0])
        acc = T.alloc_buffer((width,), "float32")
        for d in T.vectorized(width):
            acc[d] = T.float32(0)
        for k in range(start, end):
            if PF > 0:
                for q in T.unroll((width + PREFETCH_STRIDE - 1) // PREFETCH_STRIDE):
                    T.evaluate(_prefetch(T.address_of(
                        table[ids[T.min(k + PF, nnz - 1)], c0 + q * PREFETCH_STRIDE])))
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + table[ids[k], c0 + d] * w[k]
                else:
                    acc[d] = acc[d] + table[ids[k], c0 + d]
        for d in T.vectorized(width):
            if mean:
                out[b, c0 + d] = acc[d] / T.Cast("float32", T.max(end - start, T.int64(1)))
            else:
                out[b, c0 + d] = acc[d]

    @T.macro
    def one_bag(table, ids, offsets, w, out, b, m):
        for c in range(NP):
            one_pass(table, ids, offsets, w, out, b, m, c * W, W)
        if TAIL > 0:
            one_pass(table, ids, offsets, w, out, b, m, NP * W, TAIL)

    @T.macro
    def walk(table, ids, offsets, w, out, m):
        if ids.shape[0] + m < serial_below:
            for b in range(m):
                one_bag(table, ids, offsets, w, out, b, m)
        else:
            for b in T.parallel(m):
                one_bag(table, ids, offsets, w, out, b, m)

    n_offsets = 1 if include_last_offset else 0

    if has_weights:
        @T.prim_func(private=True)
        def bag_offsets_weighted(table: T.Buffer((rows, D), "float32"), var_ids: T.handle,
                                 var_offsets: T.handle, var_w: T.handle, var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            nnz = T.int64()
            m = T.int64()
            ids = T.match_buffer(var_ids, (nnz,), "int64")
            offsets = T.match_buffer(var_offsets, (m + n_offsets,), "int64")
            w = T.match_buffer(var_w, (nnz,), "float32")
            out = T.match_buffer(var_out, (m, D), "float32")
            walk(table, ids, offsets, w, out, m)

        return bag_offsets_weighted

    @T.prim_func(private=True)
    def bag_offsets(table: T.Buffer((rows, D), "float32"), var_ids: T.handle, var_offsets: T.handle,
                    var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        nnz = T.int64()
        m = T.int64()
        ids = T.match_buffer(var_ids, (nnz,), "int64")
        offsets = T.match_buffer(var_offsets, (m + n_offsets,), "int64")
        out = T.match_buffer(var_out, (m, D), "float32")
        walk(table, ids, offsets, ids, out, m)

    return bag_offsets


def embedding_lookup(rows: int, dim: int, schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """PrimFunc `(table[rows, dim] f32, ids[m] i64, out[m, dim] f32)`: `out[i] = table[ids[i]]` (plain
    `Embedding`; reshape multi-dimensional ids to [m] around it). Ids are not bounds-checked (the runtime
    checks them)."""
    _check("sum", dim)
    D = dim
    PF = _distance(schedule, D)  # each prefetch group covers the whole row
    V = 8 if D > DIM_PASS else D  # long rows: copy 8 floats at a time (no register file of loads)
    TAIL = D % V
    serial_below = schedule.serial_below

    @T.macro
    def one_row(table, ids, out, i, m):
        if PF > 0:
            for q in T.unroll((D + PREFETCH_STRIDE - 1) // PREFETCH_STRIDE):
                T.evaluate(_prefetch(T.address_of(table[ids[T.min(i + PF, m - 1)], q * PREFETCH_STRIDE])))
        for c in range(D // V):
            for d in T.vectorized(V):
                out[i, c * V + d] = table[ids[i], c * V + d]
        for d in range(TAIL):
            out[i, D - TAIL + d] = table[ids[i], D - TAIL + d]

    @T.prim_func(private=True)
    def lookup(table: T.Buffer((rows, D), "float32"), var_ids: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        ids = T.match_buffer(var_ids, (m,), "int64")
        out = T.match_buffer(var_out, (m, D), "float32")
        if m < serial_below:
            for i in range(m):
                one_row(table, ids, out, i, m)
        else:
            for i in T.parallel(m):
                one_row(table, ids, out, i, m)

    return lookup
