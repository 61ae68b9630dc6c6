"""The bf16 dense kernel on AMX-BF16 (semantics: recc/compiler/quantize.py dense_bf16): y = act(x @ w.T + b)
with x and w rounded to bfloat16 and products accumulated in fp32 by `tdpbf16ps`.

The rows of x are first rounded to bf16 into a [m (padded to 32), Kp] workspace (in the kernel: no
separate conversion kernel), then a task per 32 outputs runs all rows (its weights, Kp x 64 bytes, stay
in cache; row-major tasks re-streamed all the weights per 32 rows: 1.3 ms instead of 0.5 on
256x1024x1024), each 32 x 32 output block as 2 x 2 AMX tiles (dense_int8.amx_block) over K in steps of 32, the weights packed
[Np/16, Kp/2, 32] (`pack_bf16`: 16 outputs x 2 consecutive k per 64 bytes, an AMX-BF16 weight tile per
16 rows), and the epilogue adds the bias and applies the activation.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.dense_int8 import SERIAL_BELOW, _amx, amx_block, epilogue, padded_n
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


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (integer arithmetic: exact, and NaN stays NaN)."""
    bits = T.reinterpret("uint32", x)
    rounded = T.shift_right(bits + T.uint32(0x7FFF) + T.bitwise_and(T.shift_right(bits, T.uint32(16)), T.uint32(1)),
                            T.uint32(16))
    nan = T.bitwise_and(bits, T.uint32(0x7FFFFFFF)) > T.uint32(0x7F800000)
    return T.Cast("uint16", T.Select(nan, T.bitwise_or(T.shift_right(bits, T.uint32(16)), T.uint32(0x40)), rounded))


def bf16_value(acc, P, S, CS, B, r, row0, col0, v):
    return acc[r, v] + B[col0 + v]


def dense_amx_bf16(K: int, N: int, activation: str = "none", alpha: float = 0.01):
    """PrimFunc (X[m, K] f32, Wp[Np/16, Kp/2, 32] u16, B[Np] f32, CFG[64] u8) -> Y[m, N] on AMX-BF16."""
    KP, NP = padded_k(K), padded_n(N)
    KB, NB = KP // K_STEP, NP // 32
    store = epilogue(N, activation, alpha, 32, 32, bf16_value)
    # rows of the workspace 64 bytes longer than Kp: at a power-of-two stride (2 KiB for K = 1024) the
    # 32 rows of a block fall in 2 of L1's 64 sets and evict each other
    XS = KP + 32
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

    @T.macro
    def column(xb, Wp, B, CFG, Y, m, cb):  # all rows of one 32-output block: its weights stay in cache
        _amx("ldtilecfg", T.address_of(CFG[0]))
        for rb in range((m + 31) // 32):
            block(xb, rb * 32, Wp, B, B, B, B, Y, m, rb * 32, cb)
        _amx("tilerelease")

    @T.prim_func(private=True)
    def dense(var_x: T.handle, Wp: T.Buffer((NP // 16, KP // 2, 32), "uint16"), B: T.Buffer((NP,), "float32"),
              CFG: T.Buffer((64,), "uint8"), var_y: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        X = T.match_buffer(var_x, (m, K), "float32")
        Y = T.match_buffer(var_y, (m, N), "float32")
        xb = T.alloc_buffer(((m + 31) // 32 * 32, XS), "uint16")
        if m * KP * NP <= SERIAL_BELOW * 64:
            for r in range((m + 31) // 32 * 32):
                convert(X, xb, m, r)
            for cb in range(NB):
                column(xb, Wp, B, CFG, Y, m, cb)
        else:
            for r in T.parallel((m + 31) // 32 * 32):
                convert(X, xb, m, r)
            for cb in T.parallel(NB):
                column(xb, Wp, B, CFG, Y, m, cb)

    return dense
