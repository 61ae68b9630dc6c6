"""DIN's target attention as one hand-written TIR kernel; one build serves every batch size m.

    target_attention(S, D, widths, activations, has_score_bias)
        -> (keys[m, S, D], query[m, D], [bias[m, S]], W1q[D, N1p], b1[N1p],
            w_all (layer 1's [k, k*q] block and layers 2.. packed [N/16, K, 16], flat), b_all (layers 2.. biases,
    padded, flat), w_last[N_L], b_last[1], out[m, D])

Per sample (parallel over samples when the batch is large): the q part of layer 1 once (W1q^T q + b1),
the unit u = [k, k*q] for all S positions in scratch, then every MLP layer as a register-tiled GEMM
over the S positions (4 positions x 16 outputs per tile, weights pre-packed [N/16, K, 16] as in the dense
kernel, activation in the epilogue: common.tile_gemm), the one-output score layer as dot products, the
masked softmax and the weighted sum of the keys (common.softmax_weighted_sum). Hidden activations never
leave the sample's scratch (S x N floats).
Measured on DIN's shapes (S 50, D 32, layers 80-40-1, sigmoid), batch 64, 1 thread: 4.2 ms with
`T.exp` in the sigmoid epilogues (LLVM scalarizes it into libm calls), 2.2-2.6 ms with `fast_exp`
(~22 GFLOP/s; the dense kernel reaches ~36 on large layers: here K is only 64-80 per tile).

Also scaled-dot-product attention (`scaled_dot_product_attention`), one query row at a time.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import (
    ROWS,
    VECTOR,
    lane_sum,
    lanes,
    pack_weight,
    pad_vector,
    padded,
    softmax_weighted_sum,
    tile_gemm,
)

SERIAL_BELOW_FLOPS = 200_000
SCRATCH_LIMIT_BYTES = 512 * 1024  # per sample, on the stack


def pack_first_layer(weight: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """W' [N1, 3D] over [k, q, k*q] -> (W1q^T [D, N1p] zero-padded, W1u [N1, 2D] over [k, k*q])."""
    n1 = weight.shape[0]
    w_q = np.zeros((dim, padded(n1)), np.float32)
    w_q[:, :n1] = weight[:, dim:2 * dim].T
    w_u = np.concatenate([weight[:, :dim], weight[:, 2 * dim:]], axis=1)
    return w_q, np.ascontiguousarray(w_u, dtype=np.float32)


def pack_hidden_layers(first_u: np.ndarray,
                       hidden: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Layer 1's [k, k*q] weights and layers 2.. (weight, bias) -> (flat packed weights, flat padded biases)."""
    weights = [pack_weight(np.ascontiguousarray(first_u, np.float32)).ravel()]
    weights += [pack_weight(np.ascontiguousarray(w, np.float32)).ravel() for w, _ in hidden]
    biases = [pad_vector(np.asarray(b, np.float32)) for _, b in hidden] or [np.zeros(1, np.float32)]
    return np.concatenate(weights), np.concatenate(biases)


def _gemm_layer(S: int, K: int, N: int, act: str, w_off: int, b_off: int):
    """Macro: dst[s, :N padded] = act(src[s, :K] @ W + bias) for the S positions of one sample; W is
    packed [N/16, K, 16] at element w_off of the flat weights, the bias at element b_off of `bias`."""
    NT, MR = -(-N // VECTOR), ROWS
    TILES, TAIL = S // MR, S - S // MR * MR
    tile = tile_gemm(K, VECTOR, act, w_offset=w_off, b_offset=b_off)

    # (tile, column tile) pairs as one loop: with two nested constant loops LLVM unrolls them and splits
    # the accumulator tile into scalars (measured: 13 GFLOP/s on DIN's shapes; fused: see module doc);
    # the positions after the last full tile one at a time
    @T.macro
    def layer(src, weights, bias, dst):
        for f in range(TILES * NT):
            tile(src, weights, bias, dst, f // NT * MR, MR, f % NT)
        for f in range(TAIL * NT):
            tile(src, weights, bias, dst, TILES * MR + f // NT, 1, f % NT)

    return layer


def _score_and_pool(S: int, D: int, K: int, has_score_bias: bool):
    """Macro: score[s] = h[s, :K] . w + b (+ bias[b, s]); softmax over s; out[b] = sum_s p_s keys[b, s]."""
    pool = softmax_weighted_sum(S, D)

    @T.macro
    def finish(h, w_last, b_last, keys, score_bias, out, b):
        score = T.alloc_buffer((S,), "float32")
        stats = T.alloc_buffer((2,), "float32")  # running max, then the sum of exponentials
        stats[0] = T.float32(-3.4e38)
        for s in range(S):
            score[s] = b_last[0]
            for kk in range(K):
                score[s] = score[s] + h[s, kk] * w_last[kk]
            if has_score_bias:
                score[s] = score[s] + score_bias[b, s]
            stats[0] = T.max(stats[0], score[s])
        pool(score, stats, keys, b, out, (b,))

    return finish


def _chain(S: int, hidden: tuple[int, ...], layers: list, finish, i: int):
    """Macro: hidden layers i.. on src (layer i's output into fresh scratch), then score and pool."""
    rest = _chain(S, hidden, layers, finish, i + 1) if i + 1 < len(hidden) else None

    @T.macro
    def apply(src, qp, w_all, b_all, w_last, b_last, keys, score_bias, out, b):
        h = T.alloc_buffer((S, padded(hidden[i])), "float32")
        layers[i](src, w_all, qp if i == 0 else b_all, h)
        if rest is None:
            finish(h, w_last, b_last, keys, score_bias, out, b)
        else:
            rest(h, qp, w_all, b_all, w_last, b_last, keys, score_bias, out, b)

    return apply


def _walk_samples(S: int, D: int, N1p: int, layers_from_first, serial_max_m: int):
    """Macro: every sample b of the batch (serially up to serial_max_m samples): layer 1's query part
    and the unit [k, k*q], then the layers, score and pool."""

    @T.macro
    def one_sample(keys, query, score_bias, w1q, b1, w_all, b_all, w_last, b_last, out, b):
        qp = T.alloc_buffer((N1p,), "float32")
        for v in T.vectorized(N1p):
            qp[v] = b1[v]
        for d in range(D):
            for v in T.vectorized(N1p):
                qp[v] = qp[v] + query[b, d] * w1q[d, v]
        unit = T.alloc_buffer((S, 2 * D), "float32")
        for s in range(S):
            for d in T.vectorized(D):
                unit[s, d] = keys[b, s, d]
                unit[s, D + d] = keys[b, s, d] * query[b, d]
        layers_from_first(unit, qp, w_all, b_all, w_last, b_last, keys, score_bias, out, b)

    @T.macro
    def walk(keys, query, score_bias, w1q, b1, w_all, b_all, w_last, b_last, out, m):
        if m <= serial_max_m:
            for b in range(m):
                one_sample(keys, query, score_bias, w1q, b1, w_all, b_all, w_last, b_last, out, b)
        else:
            for b in T.parallel(m):
                one_sample(keys, query, score_bias, w1q, b1, w_all, b_all, w_last, b_last, out, b)

    return walk


def target_attention(seq: int, dim: int, widths: tuple[int, ...], activations: tuple[str, ...],
                     has_score_bias: bool) -> tirx.PrimFunc:
    """widths = the MLP's output widths (last = 1); activations = the hidden layers' (len(widths) - 1).
    PrimFunc (keys[m, S, D], query[m, D], [score_bias[m, S]], w1q[D, N1p], b1[N1p], w_all, b_all,
    w_last[N_last], b_last[1], out[m, D]) with w_all/b_all from `pack_hidden_layers`."""
    S, D = seq, dim
    if len(widths) < 2 or widths[-1] != 1 or len(activations) != len(widths) - 1:
        raise ValueError(f"target_attention needs >= 1 hidden layer and a 1-wide last layer, got {widths}")
    if 4 * S * (2 * D + sum(padded(w) for w in widths[:-1]) + 1) > SCRATCH_LIMIT_BYTES:
        raise ValueError(f"target_attention: sequence {S} x widths {widths} exceed the per-sample scratch")
    hidden = widths[:-1]
    N1p = padded(hidden[0])
    fan_in = [2 * D] + list(hidden[:-1])
    w_offs = [sum(padded(n) * k for n, k in zip(hidden[:i], fan_in[:i])) for i in range(len(hidden))]
    b_offs = [0] + [sum(padded(n) for n in hidden[1:i]) for i in range(1, len(hidden))]
    W_ALL = w_offs[-1] + padded(hidden[-1]) * fan_in[-1]
    B_ALL = max(1, sum(padded(n) for n in hidden[1:]))
    layers = [_gemm_layer(S, fan_in[i], n, activations[i], w_offs[i], b_offs[i]) for i, n in enumerate(hidden)]
    finish = _score_and_pool(S, D, hidden[-1], has_score_bias)
    flops = 2 * S * (sum(k * n for k, n in zip(fan_in, hidden)) + hidden[-1])
    serial_max_m = max(0, (SERIAL_BELOW_FLOPS - 1) // flops)
    walk = _walk_samples(S, D, N1p, _chain(S, hidden, layers, finish, 0), serial_max_m)
    return _target_attention_func(S, D, N1p, W_ALL, B_ALL, hidden[-1], has_score_bias, walk)


def _target_attention_func(S: int, D: int, N1p: int, W_ALL: int, B_ALL: int, NL: int, has_score_bias: bool,
                           walk) -> tirx.PrimFunc:
    """The PrimFunc around `walk`, with or without the score bias argument."""
    if has_score_bias:
        @T.prim_func(private=True)
        def attention_masked(var_keys: T.handle, var_query: T.handle, var_bias: T.handle,
                             w1q: T.Buffer((D, N1p), "float32"), b1: T.Buffer((N1p,), "float32"),
                             w_all: T.Buffer((W_ALL,), "float32"), b_all: T.Buffer((B_ALL,), "float32"),
                             w_last: T.Buffer((NL,), "float32"), b_last: T.Buffer((1,), "float32"),
                             var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            keys = T.match_buffer(var_keys, (m, S, D), "float32")
            query = T.match_buffer(var_query, (m, D), "float32")
            score_bias = T.match_buffer(var_bias, (m, S), "float32")
            out = T.match_buffer(var_out, (m, D), "float32")
            walk(keys, query, score_bias, w1q, b1, w_all, b_all, w_last, b_last, out, m)

        return attention_masked

    @T.prim_func(private=True)
    def attention(var_keys: T.handle, var_query: T.handle,
                  w1q: T.Buffer((D, N1p), "float32"), b1: T.Buffer((N1p,), "float32"),
                  w_all: T.Buffer((W_ALL,), "float32"), b_all: T.Buffer((B_ALL,), "float32"),
                  w_last: T.Buffer((NL,), "float32"), b_last: T.Buffer((1,), "float32"), var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        keys = T.match_buffer(var_keys, (m, S, D), "float32")
        query = T.match_buffer(var_query, (m, D), "float32")
        out = T.match_buffer(var_out, (m, D), "float32")
        walk(keys, query, query, w1q, b1, w_all, b_all, w_last, b_last, out, m)

    return attention


def scaled_dot_product_attention(q_len: int, k_len: int, dim: int, v_dim: int, scale: float,
                                 has_bias: bool) -> tirx.PrimFunc:
    """PrimFunc (q[g, Lq, D], k[g, Lk, D], v[g, Lk, DV], [bias[g, Lq, Lk]], out[g, Lq, DV]) for any g (batch
    x heads): per query row, the Lk scores (vector dot products), softmax (fast_exp) and the weighted sum
    of v rows, all in registers and a row of scratch; rows run in parallel when the work is large."""
    LQ, LK, D, DV = q_len, k_len, dim, v_dim
    V = lanes(D, 8)
    flops = 2 * LQ * LK * (D + DV)
    serial_max_g = max(0, (SERIAL_BELOW_FLOPS - 1) // flops)
    pool = softmax_weighted_sum(LK, DV)

    @T.macro
    def one_row(q, k, v, bias, out, g, i):
        score = T.alloc_buffer((LK,), "float32")
        stats = T.alloc_buffer((2,), "float32")
        stats[0] = T.float32(-3.4e38)
        for j in range(LK):
            acc = T.alloc_buffer((V,), "float32")
            for lane in T.vectorized(V):
                acc[lane] = T.float32(0)
            for c in range(D // V):
                for lane in T.vectorized(V):
                    acc[lane] = acc[lane] + q[g, i, c * V + lane] * k[g, j, c * V + lane]
            if has_bias:
                score[j] = lane_sum(acc, V) * T.float32(scale) + bias[g, i, j]
            else:
                score[j] = lane_sum(acc, V) * T.float32(scale)
            stats[0] = T.max(stats[0], score[j])
        pool(score, stats, v, g, out, (g, i))

    @T.macro
    def walk(q, k, v, bias, out, m):
        if m <= serial_max_g:
            for f in range(m * LQ):
                one_row(q, k, v, bias, out, f // LQ, f % LQ)
        else:
            for f in T.parallel(m * LQ):
                one_row(q, k, v, bias, out, f // LQ, f % LQ)

    return _sdpa_func(LQ, LK, D, DV, has_bias, walk)


def _sdpa_func(LQ: int, LK: int, D: int, DV: int, has_bias: bool, walk) -> tirx.PrimFunc:
    """The PrimFunc around `walk`, with or without the bias argument."""
    if has_bias:
        @T.prim_func(private=True)
        def sdpa_bias(var_q: T.handle, var_k: T.handle, var_v: T.handle, var_bias: T.handle, var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            q = T.match_buffer(var_q, (m, LQ, D), "float32")
            k = T.match_buffer(var_k, (m, LK, D), "float32")
            v = T.match_buffer(var_v, (m, LK, DV), "float32")
            bias = T.match_buffer(var_bias, (m, LQ, LK), "float32")
            out = T.match_buffer(var_out, (m, LQ, DV), "float32")
            walk(q, k, v, bias, out, m)

        return sdpa_bias

    @T.prim_func(private=True)
    def sdpa(var_q: T.handle, var_k: T.handle, var_v: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        q = T.match_buffer(var_q, (m, LQ, D), "float32")
        k = T.match_buffer(var_k, (m, LK, D), "float32")
        v = T.match_buffer(var_v, (m, LK, DV), "float32")
        out = T.match_buffer(var_out, (m, LQ, DV), "float32")
        walk(q, k, v, q, out, m)

    return sdpa
