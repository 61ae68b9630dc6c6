"""The bf16 dense kernel on AMX-BF16 (semantics: recc/compiler/quantize.py dense_bf16): y = act(x @ w.T + b)
with x and w rounded to bfloat16 and products accumulated in fp32 by `tdpbf16ps`.

The rows of x are first rounded to bf16 into a scratch output [m (padded to 32), row_stride] (in the
kernel: no separate conversion kernel; an output, so the VM's memory pool reuses it), then a task per
super-block of row blocks (dense_int8.super_rows: 4 x 32 rows from batch 256) runs them against each
32-output weight block in turn (the super-block's rows stay in L2, each weight block is read once per
super-block), each 32 x 32 output block as 2 x 2 AMX tiles (dense_int8.amx_block) over K in steps of 32, the weights packed
[Np/16, Kp/2, 32] (`pack_bf16`: 16 outputs x 2 consecutive k per 64 bytes, an AMX-BF16 weight tile per
16 rows), and the epilogue adds the bias and applies the activation.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import bf16_bits
from recc.compiler.codegen.tvm.kernels.cpu.dense_int8 import (
    SERIAL_BELOW,
    _amx,
    amx_block,
    epilogue,
    padded_n,
    amx_rows,
    super_tasks,
)
from recc.compiler.quantize import to_bf16

K_STEP = 32  # bf16 values per AMX tile row (64 bytes)


def padded_k(k: int) -> int:
    return -(-k // K_STEP) * K_STEP


def pack_bf16(w: np.ndarray) -> np.ndarray:
    """fp32 weights [N, K] -> bf16 bits [Np/16, Kp/2, 32] (uint16), zero-padded."""
    n, k = w.shape
    kp, np_ = padded_k(k), padded_n(n)
    full = np.zeros((np_, kp), np.uint16)
    full[:n, :k] = to_bf16(w)
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kp // 2, 2).transpose(0, 2, 1, 3).reshape(np_ // 16, kp // 2, 32))


def row_stride(K: int) -> int:
    """bf16 elements between two rows of the converted activations: Kp plus one cache line (at a
    power-of-two stride the 32 rows of a block fall in a few L1 sets)."""
    return padded_k(K) + 32


def bf16_value(acc, P, S, CS, B, r, row0, col0, v):
    return acc[r, v] + B[col0 + v]


def dense_amx_bf16(K: int, N: int, activation: str = "none", alpha: float = 0.01):
    """PrimFunc (X[m, K] f32, Wp[Np/16, Kp/2, 32] u16, B[Np] f32, CFG[64] u8) -> (Y[m, N] f32, scratch
    xb[m padded to 32, row_stride(K)] u16: x in bf16) on AMX-BF16."""
    KP, NP = padded_k(K), padded_n(N)
    KB, NB = KP // K_STEP, NP // 32
    store = epilogue(N, activation, alpha, 32, 32, bf16_value)
    XS = row_stride(K)
    block = amx_block("tdpbf16ps", KB, K_STEP, XS * 2, "float32", store)

    @T.macro
    def convert(X, xb, m, r):  # row r of x rounded to bf16 (zeros past m and K)
        if r < m:
            for k0 in range(K // 16):
                for v in T.vectorized(16):
                    xb[r, k0 * 16 + v] = bf16_bits(X[r, k0 * 16 + v])
            for k in range(K // 16 * 16, K):
                xb[r, k] = bf16_bits(X[r, k])
            for k in range(K, XS):  # the padding too: TVM shrinks a buffer to the columns TIR touches
                xb[r, k] = T.uint16(0)
        else:
            for k0 in range(XS // 16):
                for v in T.vectorized(16):
                    xb[r, k0 * 16 + v] = T.uint16(0)

    rows = amx_rows(block, NB)  # the epilogue reads only B: it stands in for P, S and CS

    @T.prim_func(private=True)
    def dense(var_x: T.handle, Wp: T.Buffer((NP // 16, KP // 2, 32), "uint16"), B: T.Buffer((NP,), "float32"),
              CFG: T.Buffer((64,), "uint8"), var_y: T.handle, var_xb: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        mp = T.int64()
        X = T.match_buffer(var_x, (m, K), "float32")
        Y = T.match_buffer(var_y, (m, N), "float32")
        xb = T.match_buffer(var_xb, (mp, XS), "uint16")
        if m * KP * NP <= SERIAL_BELOW * 64:
            for r in range(mp):
                convert(X, xb, m, r)
            for f in range(super_tasks(m)):
                rows(xb, B, Wp, B, B, B, CFG, Y, m, f)
        else:
            for r in T.parallel(mp):
                convert(X, xb, m, r)
            for f in T.parallel(super_tasks(m)):
                rows(xb, B, Wp, B, B, B, CFG, Y, m, f)

    return dense
