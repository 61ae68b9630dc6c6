"""GRU and AUGRU over a whole sequence as one hand-written TIR kernel; one build serves every batch size m.

    gru_sequence(L, H, kind) -> (x[m, L, 3H], [scores[m, L]], Whp[3H/16, H, 16], b[3Hp], out[m, L, H])

x holds the input projections of every step (one GEMM before this kernel). Samples are independent, so the
kernel walks blocks of 4 samples in parallel; each block runs all L steps with its state in scratch:
the hidden product g = h W_hh^T + b_hh as 4 x 16 register tiles over the packed weights (the dense
kernel's layout and register tile, common.tile_gemm; 48 KiB for H = 64, read from L1/L2 every step),
then the gates elementwise, vectorized over H, with the state written to out[:, t] as it goes. Gates in
PyTorch's order (r, z, n):
    r = sigmoid(x_r + g_r), z = sigmoid(x_z + g_z), n = tanh(x_n + r * g_n)
    GRU: h' = n + z (h - n);   AUGRU: h' = h + z s_t (n - h)
sigmoid and tanh use the vectorizable `fast_exp` of the dense kernel's epilogues (common.activation_expr).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import ROWS, VECTOR, activation_expr, tile_gemm

SERIAL_BELOW_MACS = 200_000


def _gates(H: int, augru: bool):
    """Macro: the new state of R samples from row b0 at step t from g = h W_hh^T + b_hh, written to h and
    out[:, t] (n: one sample's candidate state in scratch)."""

    @T.macro
    def gates(x, scores, h, g, n, out, b0, R, t):
        for r in range(R):
            for j in T.vectorized(H):
                n[j] = activation_expr("tanh", x[b0 + r, t, 2 * H + j] + activation_expr(
                    "sigmoid", x[b0 + r, t, j] + g[r, j]) * g[r, 2 * H + j])
            for j in T.vectorized(H):
                if augru:
                    h[r, j] = h[r, j] + activation_expr("sigmoid", x[b0 + r, t, H + j] + g[r, H + j]) \
                        * scores[b0 + r, t] * (n[j] - h[r, j])
                else:
                    h[r, j] = n[j] + activation_expr("sigmoid", x[b0 + r, t, H + j] + g[r, H + j]) \
                        * (h[r, j] - n[j])
                out[b0 + r, t, j] = h[r, j]

    return gates


def _block(L: int, H: int, augru: bool, R: int):
    """Macro: R samples from row b0, all L steps."""
    G, NV = 3 * H, VECTOR
    NT = -(-G // NV)
    GP = NT * NV
    hidden_product = tile_gemm(H, NV)  # g[r, :] = h[r, :] @ W_hh^T + b_hh, no activation
    gates = _gates(H, augru)

    @T.macro
    def run(x, scores, wp, bias, out, b0):
        h = T.alloc_buffer((R, H), "float32")
        g = T.alloc_buffer((R, GP), "float32")
        n = T.alloc_buffer((H,), "float32")
        for r in range(R):
            for j in T.vectorized(H):
                h[r, j] = T.float32(0)
        for t in range(L):
            for jt in range(NT):
                hidden_product(h, wp, bias, g, 0, R, jt)
            gates(x, scores, h, g, n, out, b0, R, t)

    return run


def gru_sequence(length: int, hidden: int, kind: str) -> tirx.PrimFunc:
    if kind not in ("gru", "augru"):
        raise ValueError(f"recurrent kernel kind must be gru or augru, got {kind!r}")
    L, H, G = length, hidden, 3 * hidden
    NV = VECTOR
    NT = -(-G // NV)
    GP = NT * NV
    augru = kind == "augru"
    serial_max_m = max(0, (SERIAL_BELOW_MACS - 1) // (L * G * H))
    tiles, single = _block(L, H, augru, ROWS), _block(L, H, augru, 1)

    @T.macro
    def walk(x, scores, wp, bias, out, m):
        if m <= serial_max_m:
            for blk in range(m // ROWS):
                tiles(x, scores, wp, bias, out, blk * ROWS)
        else:
            for blk in T.parallel(m // ROWS):
                tiles(x, scores, wp, bias, out, blk * ROWS)
        for i in range(m // ROWS * ROWS, m):
            single(x, scores, wp, bias, out, i)

    if augru:
        @T.prim_func(private=True)
        def augru_sequence(var_x: T.handle, var_s: T.handle, wp: T.Buffer((NT, H, NV), "float32"),
                           bias: T.Buffer((GP,), "float32"), var_out: T.handle):
            T.func_attr({"tir.noalias": True})
            m = T.int64()
            x = T.match_buffer(var_x, (m, L, G), "float32")
            scores = T.match_buffer(var_s, (m, L), "float32")
            out = T.match_buffer(var_out, (m, L, H), "float32")
            walk(x, scores, wp, bias, out, m)

        return augru_sequence

    @T.prim_func(private=True)
    def gru_seq(var_x: T.handle, wp: T.Buffer((NT, H, NV), "float32"), bias: T.Buffer((GP,), "float32"),
                var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(var_x, (m, L, G), "float32")
        out = T.match_buffer(var_out, (m, L, H), "float32")
        walk(x, None, wp, bias, out, m)

    return gru_seq
