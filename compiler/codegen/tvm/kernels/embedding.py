"""Embedding gather-reduce kernels: hand-written, block-free TIR; one build serves every batch size m.

    embedding_bag(table, ids [, per_sample_weights]) -> out[b] = sum_j w[b, j] * table[ids[b, j]]  (or mean)

Kernels (argument order = PrimFunc parameter order; tables are runtime buffers, never constants):
    embedding_bag_fixed(rows, dim, bag_size, mode, has_weights)
        -> (table[rows, D], ids[m, L], [w[m, L]], out[m, D])
    embedding_bags_stacked(table_rows, dim, bag_size, mode, has_weights=False)
        -> (table[sum(table_rows), D], ids[m, T, L], [w[m, T, L]], out[m, T, D])
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

Ids and offsets are NOT bounds-checked here: the runtime checks every id against its table (and the
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


def _row_starts(table_rows: tuple[int, ...]) -> list[int]:
    return [sum(table_rows[:i]) for i in range(len(table_rows))]


def _row_base(table_rows: tuple[int, ...], t: tirx.PrimExpr) -> tirx.PrimExpr:
    """First row of table `t` in the stacked table: `t * rows` if all tables have the same rows, else a
    select chain over the (compile-time) starts. Evaluated once per bag, not per lookup."""
    if len(table_rows) == 1:
        return tirx.const(0, "int64")
    if len(set(table_rows)) == 1:
        return t * tirx.const(table_rows[0], "int64")
    starts = _row_starts(table_rows)
    expr = tirx.const(starts[-1], "int64")
    for i in range(len(starts) - 2, -1, -1):
        expr = tirx.Select(t == tirx.const(i, "int64"), tirx.const(starts[i], "int64"), expr)
    return expr


def _passes(dim: int) -> tuple[int, int]:
    """(width of a full pass, number of full passes) over the dim; a tail pass covers the rest. Passes
    are equal when they can be (dim 100: 2 x 50), as each distinct width is one more macro expansion."""
    count = -(-dim // DIM_PASS)
    width = dim // count if dim % count == 0 else min(dim, DIM_PASS)
    return width, dim // width


@dataclass(frozen=True)
class _FixedShape:
    """Compile-time shape of a fixed-layout gather: T tables stacked into one [sum(rows), dim] buffer,
    bags of `bag_size` ids; `is_stacked` picks ids [m, T, L] / out [m, T, D] over ids [m, L] / out [m, D]."""

    table_rows: tuple[int, ...]
    dim: int
    bag_size: int
    mode: str
    has_weights: bool
    is_stacked: bool


def _fixed_walk(shape: _FixedShape, schedule: GatherSchedule):
    """The macro `walk(table, ids, weights, out, m)`: every bag, serially for small m, else in parallel.
    Bag g = t * m + b walks table t's bags in batch order (table-major)."""
    NT, D, L = len(shape.table_rows), shape.dim, shape.bag_size
    W, NP = _passes(D)
    TAIL = D - W * NP
    PF = min(_distance(schedule, W), L)
    ID_LINES = (L * 8 + 63) // 64
    prefetch_ids = schedule.prefetch_next_ids and NT > 1 and PF > 0
    # largest batch that runs serially (decided here: a branch that implies m == 0 makes TVM's simplifier
    # reject the `% m` inside it as a division by zero)
    serial_max_m = (schedule.serial_below - 1) // max(NT * L, 1)
    one_pass = _fixed_pass(shape, PF)

    def bag_of(g, m):
        """(b, t) of walk position g = t * m + b."""
        if NT == 1:
            return g, tirx.const(0, "int64")
        return tirx.truncmod(g, m), tirx.truncdiv(g, m)

    def ahead(m, b, t, k):
        """(b, t) of the bag k positions later in walk order, clamped to the last bag."""
        if NT == 1:
            return tirx.min(b + k, m - 1), tirx.const(0, "int64")
        return bag_of(tirx.min(t * m + b + k, m * NT - 1), m)

    @T.macro
    def one_bag(table, ids, w, out, m, b, t):
        # the next bag in walk order, whose first ids are prefetched near this bag's end
        bn = T.meta_var(ahead(m, b, t, 1)[0])
        tn = T.meta_var(ahead(m, b, t, 1)[1])
        if prefetch_ids:  # [m, T, L] ids are strided in table-major order: fetch the bag after next's
            for q in T.unroll(ID_LINES):
                T.evaluate(_prefetch(T.address_of(ids[ahead(m, b, t, 2)[0], ahead(m, b, t, 2)[1], q * 8])))
        for c in range(NP):
            one_pass(table, ids, w, out, b, t, bn, tn, c * W, W)
        if TAIL > 0:
            one_pass(table, ids, w, out, b, t, bn, tn, NP * W, TAIL)

    @T.macro
    def walk(table, ids, w, out, m):
        if serial_max_m > 0:
            if m <= serial_max_m:
                for g in range(m * NT):
                    one_bag(table, ids, w, out, m, bag_of(g, m)[0], bag_of(g, m)[1])
            else:
                for g in T.parallel(m * NT):
                    one_bag(table, ids, w, out, m, bag_of(g, m)[0], bag_of(g, m)[1])
        else:
            for g in T.parallel(m * NT):
                one_bag(table, ids, w, out, m, bag_of(g, m)[0], bag_of(g, m)[1])

    return walk


def _fixed_pass(shape: _FixedShape, PF: int):
    """The macro accumulating dims [c0, c0 + width) of bag (b, t) in registers, prefetching the row PF
    lookups ahead (in the next bag (bn, tn) during the last PF lookups)."""
    rows, has_weights, is_stacked = shape.table_rows, shape.has_weights, shape.is_stacked
    L = shape.bag_size
    mean = shape.mode == "mean" and L > 0

    def id_at(ids, b, t, j):
        return ids[b, t, j] if is_stacked else ids[b, j]

    def row(table, ids, base, b, t, j, c):
        return table[base + id_at(ids, b, t, j), c]

    def weight_at(w, b, t, j):
        return w[b, t, j] if is_stacked else w[b, j]

    @T.macro
    def one_pass(table, ids, w, out, b, t, bn, tn, c0, width):
        base = T.meta_var(_row_base(rows, t))
        base_next = T.meta_var(_row_base(rows, tn))
        acc = T.alloc_buffer((width,), "float32")
        for d in T.vectorized(width):
            acc[d] = T.float32(0)
        for j in range(L - PF):
            if PF > 0:
                for q in T.unroll(-(-width // PREFETCH_STRIDE)):
                    T.evaluate(_prefetch(T.address_of(
                        row(table, ids, base, b, t, j + PF, c0 + q * PREFETCH_STRIDE))))
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + row(table, ids, base, b, t, j, c0 + d) * weight_at(w, b, t, j)
                else:
                    acc[d] = acc[d] + row(table, ids, base, b, t, j, c0 + d)
        for j in range(L - PF, L):
            for q in T.unroll(-(-width // PREFETCH_STRIDE)):
                T.evaluate(_prefetch(T.address_of(
                    row(table, ids, base_next, bn, tn, j + PF - L, c0 + q * PREFETCH_STRIDE))))
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + row(table, ids, base, b, t, j, c0 + d) * weight_at(w, b, t, j)
                else:
                    acc[d] = acc[d] + row(table, ids, base, b, t, j, c0 + d)
        for d in T.vectorized(width):
            if is_stacked:
                out[b, t, c0 + d] = acc[d] / T.float32(L) if mean else acc[d]
            else:
                out[b, c0 + d] = acc[d] / T.float32(L) if mean else acc[d]

    return one_pass


def _fixed_bags(shape: _FixedShape, schedule: GatherSchedule) -> tirx.PrimFunc:
    """The PrimFunc signature for `shape` around its walk."""
    _check(shape.mode, shape.dim, shape.has_weights)
    NT, D, L = len(shape.table_rows), shape.dim, shape.bag_size
    R = sum(shape.table_rows)
    walk = _fixed_walk(shape, schedule)

    if shape.is_stacked and shape.has_weights:
        @T.prim_func(private=True)
        def bags_stacked_weighted(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_w: T.handle,
                                  var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, NT, L), "int64")
            w = T.match_buffer(var_w, (m, NT, L), "float32")
            out = T.match_buffer(var_out, (m, NT, D), "float32")
            walk(table, ids, w, out, m)

        return bags_stacked_weighted

    if shape.is_stacked:
        @T.prim_func(private=True)
        def bags_stacked(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, NT, L), "int64")
            out = T.match_buffer(var_out, (m, NT, D), "float32")
            walk(table, ids, ids, out, m)

        return bags_stacked

    if shape.has_weights:
        @T.prim_func(private=True)
        def bag_fixed_weighted(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_w: T.handle,
                               var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, L), "int64")
            w = T.match_buffer(var_w, (m, L), "float32")
            out = T.match_buffer(var_out, (m, D), "float32")
            walk(table, ids, w, out, m)

        return bag_fixed_weighted

    @T.prim_func(private=True)
    def bag_fixed(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        ids = T.match_buffer(var_ids, (m, L), "int64")
        out = T.match_buffer(var_out, (m, D), "float32")
        walk(table, ids, ids, out, m)

    return bag_fixed


def embedding_bag_fixed(rows: int, dim: int, bag_size: int, mode: str, has_weights: bool,
                        schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """PrimFunc `(table[rows, dim] f32, ids[m, bag_size] i64, [weights[m, bag_size] f32], out[m, dim] f32)`
    for any batch m: `out[b] = reduce_j weights[b, j] * table[ids[b, j]]`, reduce = sum or mean (/ bag_size).
    Ids are not bounds-checked (the runtime checks them)."""
    return _fixed_bags(_FixedShape((rows,), dim, bag_size, mode, has_weights, False), schedule)


def embedding_bags_stacked(table_rows: tuple[int, ...], dim: int, bag_size: int, mode: str,
                           has_weights: bool = False,
                           schedule: GatherSchedule = DEFAULT_SCHEDULE) -> tirx.PrimFunc:
    """T tables in one kernel. PrimFunc `(table[sum(table_rows), dim] f32, ids[m, T, bag_size] i64,
    [weights[m, T, bag_size] f32], out[m, T, dim] f32)`: the tables are stacked row-wise in one buffer
    (table t starts at row `sum(table_rows[:t])`, baked into the kernel), each table's ids are local to
    that table, and `out[b, t] = reduce_j table_t[ids[b, t, j]]`. `out` is contiguous, so viewing it as
    `[m, T * dim]` (the DLRM concat) is free. Ids are not bounds-checked (the runtime checks them)."""
    table_rows = tuple(int(r) for r in table_rows)
    if not table_rows or min(table_rows) < 1:
        raise ValueError(f"embedding_bags_stacked needs at least one table, each with >= 1 row, "
                         f"got {table_rows}")
    return _fixed_bags(_FixedShape(table_rows, dim, bag_size, mode, has_weights, True), schedule)


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
