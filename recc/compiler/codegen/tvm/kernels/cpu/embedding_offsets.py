"""Embedding kernels over flat id lists: torch's offsets bags and plain lookups. Hand-written, block-free
TIR; one build serves every batch size m (the gather schedule and its measurements: gather.py).

    embedding_bag_offsets(rows, dim, mode, has_weights, include_last_offset)
        -> (table[rows, D], ids[nnz], offsets[m] or [m + 1], [w[nnz]], out[m, D])
    embedding_lookup(rows, dim) -> (table[rows, D], ids[m], out[m, D])
each with an optional `schedule: GatherSchedule` last.

Ids and offsets are NOT bounds-checked here: the check kernel at the top of the compiled function
(checks.py) or the runtime checks every id against its table (and the offsets) before calling; an
out-of-range id reads arbitrary memory.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.gather import (
    DEFAULT_SCHEDULE,
    DIM_PASS,
    PREFETCH_STRIDE,
    GatherSchedule,
    check_args,
    dim_passes,
    lookups_ahead,
    prefetch,
)


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
    check_args(mode, dim, has_weights)
    walk = _offsets_walk(dim, mode, has_weights, include_last_offset, schedule)
    return _offsets_func(rows, dim, has_weights, 1 if include_last_offset else 0, walk)


def _offsets_walk(dim: int, mode: str, has_weights: bool, include_last_offset: bool,
                  schedule: GatherSchedule):
    """Macro walk(table, ids, offsets, w, out, m): every bag, serially below `serial_below` ids + bags."""
    D = dim
    W, NP = dim_passes(D)
    PF = lookups_ahead(schedule, W)
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
                    T.evaluate(prefetch(T.address_of(
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

    return walk


def _offsets_func(rows: int, D: int, has_weights: bool, n_offsets: int, walk) -> tirx.PrimFunc:
    """The PrimFunc around `walk`, with or without per-sample weights; offsets has m + n_offsets entries."""
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
    check_args("sum", dim)
    D = dim
    PF = lookups_ahead(schedule, D)  # each prefetch group covers the whole row
    V = 8 if D > DIM_PASS else D  # long rows: copy 8 floats at a time (no register file of loads)
    TAIL = D % V
    serial_below = schedule.serial_below

    @T.macro
    def one_row(table, ids, out, i, m):
        if PF > 0:
            for q in T.unroll((D + PREFETCH_STRIDE - 1) // PREFETCH_STRIDE):
                T.evaluate(prefetch(T.address_of(table[ids[T.min(i + PF, m - 1)], q * PREFETCH_STRIDE])))
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


def bag_starts() -> tirx.PrimFunc:
    """PrimFunc `(ids[m, l] i64) -> offsets[m] i64`, offsets[b] = b * l: fixed bags of a symbolic size as
    offsets bags (only ids' shape is read)."""

    @T.prim_func(private=True)
    def starts(var_ids: T.handle, var_offsets: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        length = T.int64()
        T.match_buffer(var_ids, (m, length), "int64")
        offsets = T.match_buffer(var_offsets, (m,), "int64")
        for b in range(m):
            offsets[b] = b * length

    return starts
