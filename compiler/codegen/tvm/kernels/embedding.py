"""Embedding-bag gather-reduce kernels (hand-written TIR). Ids are NOT bounds-checked here: the runtime
checks them before calling (TVM gathers read whatever memory an id points at)."""

from __future__ import annotations

from tvm.script import tirx as T


def embedding_bag_fixed(rows: int, dim: int, bag_size: int, mode: str, has_weights: bool):
    """(table[rows, dim], ids[m, bag], [weights[m, bag]], out[m, dim]) for any m."""
    R, D, L = rows, dim, bag_size
    scale = 1.0 / bag_size if mode == "mean" and bag_size else 1.0

    if has_weights:
        @T.prim_func(private=True)
        def bag_w(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_w: T.handle, var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            ids = T.match_buffer(var_ids, (m, L), "int64")
            w = T.match_buffer(var_w, (m, L), "float32")
            out = T.match_buffer(var_out, (m, D), "float32")
            for b in T.parallel(m):
                acc = T.alloc_buffer((D,), "float32")
                for d in T.vectorized(D):
                    acc[d] = T.float32(0)
                for j in range(L):
                    for d in T.vectorized(D):
                        acc[d] = acc[d] + table[ids[b, j], d] * w[b, j]
                for d in T.vectorized(D):
                    out[b, d] = acc[d] * T.float32(scale)
        return bag_w

    @T.prim_func(private=True)
    def bag(table: T.Buffer((R, D), "float32"), var_ids: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        ids = T.match_buffer(var_ids, (m, L), "int64")
        out = T.match_buffer(var_out, (m, D), "float32")
        for b in T.parallel(m):
            acc = T.alloc_buffer((D,), "float32")
            for d in T.vectorized(D):
                acc[d] = T.float32(0)
            for j in range(L):
                for d in T.vectorized(D):
                    acc[d] = acc[d] + table[ids[b, j], d]
            for d in T.vectorized(D):
                out[b, d] = acc[d] * T.float32(scale)
    return bag
