"""Embedding gather-reduce kernels over fixed-size bags: hand-written, block-free TIR; one build serves
every batch size m (the gather schedule and its measurements: gather.py).

    embedding_bag(table, ids [, per_sample_weights]) -> out[b] = sum_j w[b, j] * table[ids[b, j]]  (or mean)

Kernels (argument order = PrimFunc parameter order; tables are runtime buffers, never constants):
    embedding_bag_fixed(rows, dim, bag_size, mode, has_weights)
        -> (table[rows, D], ids[m, L], [w[m, L]], out[m, D])
    batched_embedding_bag(segments, ids_width, mode, has_weights=False)
        -> (weights[total] flat (fp32, uint16 bf16, or uint8 8-bit row-wise), ids[m, C], [w[m, C]],
            out[m, sum of dims])
each with an optional `schedule: GatherSchedule` last. Offsets bags and plain lookups:
embedding_offsets.py.

Ids are NOT bounds-checked here: the check kernel at the top of the compiled function (checks.py) or the
runtime checks every id against its table before calling; an out-of-range id reads arbitrary memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.gather import (
    DEFAULT_SCHEDULE,
    PREFETCH_STRIDE,
    GatherSchedule,
    check_args,
    dim_passes,
    lookups_ahead,
    prefetch,
)


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
    # 8-bit row-wise tables (FBGEMM TBE's inference layout, recc/compiler/quantize.py pack_rowwise_int8):
    # each row is `row_bytes` bytes of a flat uint8 buffer, dim uint8 values then its fp16 scale and bias (at
    # byte row_bytes - 4); weight_offset counts bytes. None: fp32 rows.
    row_bytes: int | None = None
    # bf16 rows: dim bfloat16 values (the top 16 bits of fp32, stored as uint16), widened as read
    bf16: bool = False

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
    RB = seg.row_bytes

    def row(table, start, idv, c):
        if RB is not None:  # q * scale + bias, the row's fp16 scale and bias in its last 4 bytes
            base = tirx.const(seg.weight_offset, "int64") + (start + idv) * tirx.const(RB, "int64")
            scale = T.Cast("float32", T.reinterpret("float16", table[T.ramp(base + RB - 4, 1, 2)]))
            bias = T.Cast("float32", T.reinterpret("float16", table[T.ramp(base + RB - 2, 1, 2)]))
            return T.Cast("float32", table[base + c]) * scale + bias
        if flat:
            value = table[tirx.const(seg.weight_offset, "int64") + (start + idv) * tirx.const(D, "int64") + c]
            return T.reinterpret("float32", T.shift_left(T.Cast("uint32", value), T.uint32(16))) if seg.bf16 else value
        return table[start + idv, c]

    def element(table, start, idv, c):  # what a prefetch points at: element c of the row
        if RB is not None:
            return table[tirx.const(seg.weight_offset, "int64") + (start + idv) * tirx.const(RB, "int64") + c]
        if seg.bf16:
            return table[tirx.const(seg.weight_offset, "int64") + (start + idv) * tirx.const(D, "int64") + c]
        return row(table, start, idv, c)
    stride = PREFETCH_STRIDE * 2 if seg.bf16 else PREFETCH_STRIDE  # elements in 128 bytes

    @T.macro
    def fetch(table, start, idv, c0, width):
        """Prefetch a row's pass: every 128 bytes of an fp32 row; both ends of the pass over an 8-bit row
        and its scale and bias (a 40-byte row straddles two cache lines more often than not)."""
        if RB is not None:
            T.evaluate(prefetch(T.address_of(element(table, start, idv, c0))))
            T.evaluate(prefetch(T.address_of(element(table, start, idv, c0 + width - 1))))
            T.evaluate(prefetch(T.address_of(element(table, start, idv, RB - 1))))
        else:
            for q in T.unroll(-(-width // stride)):
                T.evaluate(prefetch(T.address_of(element(table, start, idv, c0 + q * stride))))

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
                fetch(table, start, ids[b, col + j + PF], c0, width)
            for d in T.vectorized(width):
                if has_weights:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d) * w[b, col + j]
                else:
                    acc[d] = acc[d] + row(table, start, ids[b, col + j], c0 + d)
        for j in range(L - PF, L):
            fetch(table, start_next, ids[bn, col_next + j + PF - L], c0, width)
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
    W, NP = dim_passes(D)
    TAIL = D - W * NP
    row_floats = -(-W // 4) if seg.row_bytes is not None else (-(-W // 2) if seg.bf16 else W)  # in 4-byte units
    PF = min(lookups_ahead(schedule, row_floats), L)
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
                T.evaluate(prefetch(T.address_of(
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
                   mode: str, has_weights: bool, schedule: GatherSchedule,
                   table_dtype: str = "float32") -> tirx.PrimFunc:
    """The PrimFunc `(table, ids[m, ids_width], [w[m, ids_width]], out[m, out_width])` walking every bag
    of every segment, serially for small m (decided at compile time as a largest serial m: a branch
    that implies m == 0 makes TVM's simplifier reject the `% m` inside it), else in parallel."""
    for seg in segments:
        check_args(mode, seg.dim, has_weights)
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
        def gather_weighted(table: T.Buffer(table_shape, table_dtype), var_ids: T.handle, var_w: T.handle,
                            var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, C), "int64")
            w = T.match_buffer(var_w, (m, C), "float32")
            out = T.match_buffer(var_out, (m, OUT), "float32")
            walk(table, ids, w, out, m)

        return gather_weighted

    @T.prim_func(private=True)
    def gather(table: T.Buffer(table_shape, table_dtype), var_ids: T.handle, var_out: T.handle):
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
    kinds = {"uint8" if s.row_bytes is not None else ("uint16" if s.bf16 else "float32") for s in segments}
    if len(kinds) != 1:
        raise ValueError("a batched gather's tables are all fp32, all bf16 or all 8-bit row-wise")
    total = max(s.weight_offset + sum(s.table_rows) * (s.row_bytes or s.dim) for s in segments)
    out_width = max(s.out_col + len(s.table_rows) * s.dim for s in segments)
    return _gather_kernel(tuple(segments), (total,), ids_width, out_width, mode, has_weights, schedule, kinds.pop())
