"""What recc's CPU kernels share, written once:

- `tile_gemm`: the register-tile GEMM macro (R x NV accumulators over the whole K on weights packed
  [N/NV, K, NV], bias and activation applied in registers, the tile stored once). Used by the dense
  kernel (dense.py), DIN's attention MLP layers (attention.py) and the GRU/AUGRU hidden product
  (recurrent.py).
- `fast_exp` and `activation_expr`: the activation epilogues (dense, attention and recurrent kernels;
  softmax).
- `pack_weight`, `padded`, `pad_vector`: the packed weight layout the GEMM's inner loop streams, and
  biases padded to it.
- `softmax_weighted_sum`: the softmax over a row of scores and the weighted sum of value rows that close
  DIN's target attention and scaled-dot-product attention (attention.py).
- `lanes`, `lane_sum`: vector dot products that sum their lanes once (interaction.py, attention.py).

Scratch buffers use the default (global) scope: TVM then emits a stack alloca that LLVM keeps in
registers; "local" scope becomes a heap workspace and halves the speed.
"""

from __future__ import annotations

import math

import numpy as np
from tvm.script import tirx as T

VECTOR = 16  # outputs per column tile (two AVX2 registers, one AVX-512 register)
ROWS = 4  # rows per register tile with AVX2: 8 accumulators of the 16 registers


EXP_LOW = -88.3762626647949  # 2^n built from floor(x log2 e + 0.5) = -127: exponent bits 0, exp = 0
EXP_HIGH = 88.72283935546875  # fp32 ln(FLT_MAX) rounded up: n = 128, exponent bits 255, exp = +inf
ROUNDER = 12582912.0  # 1.5 * 2^23: n + ROUNDER holds the integer n in its low mantissa bits
ROUNDER_BITS = 0x4B400000
INF = float("inf")


def fast_exp(x):
    """exp(x) for float32 as pure arithmetic (Cephes expf: x = n ln2 + r, a degree-6 polynomial in r, 2^n
    built in the exponent bits), so LLVM vectorizes it. TVM lowers `T.exp` to `llvm.exp`, which LLVM
    scalarizes into one libm call per lane: a sigmoid epilogue then cost more than DIN's attention
    GEMMs. Relative error ~2e-7 (fp32 rounding) on [-88.38, 88.38].

    IEEE at no extra instruction: the clamp to [EXP_LOW, EXP_HIGH] is written as selects that keep NaN
    (vmaxps / vminps with the bound first); 2^n comes from the bits of n + ROUNDER (integer arithmetic on
    float bits, no float -> int conversion, which is undefined for NaN), so NaN flows through the
    polynomial to the result; -inf clamps to EXP_LOW, whose 2^n is 0 (exp = 0); +inf clamps to EXP_HIGH,
    whose 2^n is +inf (exp = +inf). Between 88.38 and ln(FLT_MAX) the result is +inf where expf is still
    2.4e38-3.4e38 (the epilogues only divide by 1 + exp: 0 instead of ~3e-39)."""
    # bound first: max(b, x) is select(b > x, b, x), which passes NaN on (as nested selects do, but those
    # made LLVM take 10x longer on the unrolled GRU kernels: DIEN built in 90 s instead of 9)
    x = T.min(T.float32(EXP_HIGH), T.max(T.float32(EXP_LOW), x))
    n = T.floor(x * T.float32(1.44269504088896341) + T.float32(0.5))
    r = x - n * T.float32(0.693359375) - n * T.float32(-2.12194440e-4)
    p = T.float32(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + T.float32(c)
    biased = T.reinterpret("int32", n + T.float32(ROUNDER)) - T.int32(ROUNDER_BITS - 127)
    return (p * r * r + r + T.float32(1)) * T.reinterpret("float32", T.shift_left(biased, T.int32(23)))


def activation_expr(name: str, x, alpha: float = 0.01):
    """The TIR expression of an activation applied to x (used in kernel epilogues)."""
    zero, one, half, two = T.float32(0), T.float32(1), T.float32(0.5), T.float32(2)
    if name == "none":
        return x
    if name == "relu":  # not T.max(x, 0): a select on x > 0 (maxps(x, 0)), which turns NaN into 0
        return T.Select(x < zero, zero, x)
    if name == "sigmoid":
        return one / (one + fast_exp(-x))
    if name == "tanh":  # 2 sigmoid(2x) - 1: absolute error ~1e-7 near 0, exact limits at +-inf
        return two / (one + fast_exp(-two * x)) - one
    if name == "silu":
        return x / (one + fast_exp(-x))
    if name == "gelu":  # eager's: x (1 + erf(x / sqrt 2)) / 2, and NaN for x = +-inf (as torch's CPU kernel)
        gelu = x * (one + T.erf(x * T.float32(1 / math.sqrt(2)))) * half
        return T.Select(T.fabs(x) < T.float32(INF), gelu, T.float32(float("nan")))
    if name == "gelu_tanh":
        return half * x * (one + T.tanh(T.float32(math.sqrt(2 / math.pi)) * (x + T.float32(0.044715) * x * x * x)))
    if name == "leaky_relu":
        return T.Select(x > zero, x, x * T.float32(alpha))
    raise ValueError(f"dense kernel has no epilogue for activation {name!r}")


def bf16_bits(x):
    """float32 -> bfloat16 bits (uint16), round to nearest even (integer arithmetic: exact; NaN stays NaN)."""
    bits = T.reinterpret("uint32", x)
    rounded = T.shift_right(bits + T.uint32(0x7FFF) + T.bitwise_and(T.shift_right(bits, T.uint32(16)), T.uint32(1)),
                            T.uint32(16))
    nan = T.bitwise_and(bits, T.uint32(0x7FFFFFFF)) > T.uint32(0x7F800000)
    return T.Cast("uint16", T.Select(nan, T.bitwise_or(T.shift_right(bits, T.uint32(16)), T.uint32(0x40)), rounded))


def from_bf16_bits(bits):
    return T.reinterpret("float32", T.shift_left(T.Cast("uint32", bits), T.uint32(16)))


def pack_weight(weight: np.ndarray, vector: int = VECTOR) -> np.ndarray:
    """[N, K] -> [ceil(N/vector), K, vector], zero-padded: the layout the kernel's inner loop streams."""
    n, k = weight.shape
    tiles = -(-n // vector)
    padded = np.zeros((tiles * vector, k), dtype=weight.dtype)
    padded[:n] = weight
    return np.ascontiguousarray(padded.reshape(tiles, vector, k).transpose(0, 2, 1))


def padded(n: int) -> int:
    """n rounded up to whole column tiles of VECTOR."""
    return -(-n // VECTOR) * VECTOR


def pad_vector(vector: np.ndarray) -> np.ndarray:
    """A bias [N] zero-padded to [padded(N)] float32, to match weights packed by `pack_weight`."""
    out = np.zeros(padded(vector.shape[0]), np.float32)
    out[:vector.shape[0]] = vector
    return out


def tile_gemm(K: int, NV: int = VECTOR, activation: str = "none", alpha: float = 0.01,
              columns: int | None = None, w_offset: int | None = None, b_offset: int = 0, bf16: bool = False):
    """The register-tile GEMM macro `tile(A, W, B, Y, row0, R, jt)`: rows [row0, row0 + R) of column tile jt,

        Y[row0 + r, jt*NV + v] = act(sum_kk A[row0 + r, kk] * W[jt, kk, v] + B[b_offset + jt*NV + v]),

    as R x NV accumulators over the whole K, the bias and activation applied on the tile in registers
    (epilogue) and the tile stored once. W is packed [ceil(N/NV), K, NV] (`pack_weight`): a buffer of
    that shape, or, with `w_offset`, flat from element w_offset. `columns` = N where N is not a multiple
    of NV: stores beyond N are then masked (else the whole tile is stored, vectorized). R <= 8 keeps
    the accumulators in registers. `bf16`: W holds bfloat16 bits (uint16; half the bytes streamed) and A
    is rounded to bf16 as it is read: bf16 x bf16 products, exact in fp32, accumulated in fp32 (the
    semantics of a bf16 dense layer, on any CPU)."""
    full = columns is None or columns % NV == 0

    def w_at(W, jt, kk, v):
        w = W[jt, kk, v] if w_offset is None else W[w_offset + (jt * K + kk) * NV + v]
        return from_bf16_bits(w) if bf16 else w

    def a_at(A, row, kk):
        return from_bf16_bits(bf16_bits(A[row, kk])) if bf16 else A[row, kk]

    def act(x):
        return activation_expr(activation, x, alpha)

    @T.macro
    def tile(A, W, B, Y, row0, R, jt):
        acc = T.alloc_buffer((R, NV), "float32")
        for r in T.unroll(R):
            for v in T.vectorized(NV):
                acc[r, v] = T.float32(0)
        for kk in range(K):
            for r in T.unroll(R):
                for v in T.vectorized(NV):
                    acc[r, v] = acc[r, v] + a_at(A, row0 + r, kk) * w_at(W, jt, kk, v)
        for r in T.unroll(R):
            if full:
                for v in T.vectorized(NV):
                    Y[row0 + r, jt * NV + v] = act(acc[r, v] + B[b_offset + jt * NV + v])
            else:
                for v in range(NV):
                    if jt * NV + v < columns:
                        Y[row0 + r, jt * NV + v] = act(acc[r, v] + B[b_offset + jt * NV + v])

    return tile


def softmax_weighted_sum(S: int, DV: int):
    """The macro `pool(score, stats, values, b, out, row)`: given S scores in score[:S] and their maximum
    in stats[0], p = softmax(score) (with `fast_exp`; their sum goes to stats[1]) and

        out[*row, d] = sum_s p_s * values[b, s, d]   for d < DV,

    accumulated in DV vector lanes and normalized once at the end."""

    @T.macro
    def pool(score, stats, values, b, out, row):
        stats[1] = T.float32(0)
        for s in range(S):
            score[s] = fast_exp(score[s] - stats[0])
            stats[1] = stats[1] + score[s]
        acc = T.alloc_buffer((DV,), "float32")
        for d in T.vectorized(DV):
            acc[d] = T.float32(0)
        for s in range(S):
            for d in T.vectorized(DV):
                acc[d] = acc[d] + score[s] * values[b, s, d]
        for d in T.vectorized(DV):
            out[*row, d] = acc[d] / stats[1]

    return pool


def lanes(n: int, widest: int = 16) -> int:
    """The widest vector of at most `widest` lanes (a power of 2) that divides n."""
    return next(v for v in (16, 8, 4, 2, 1) if v <= widest and n % v == 0)


def lane_sum(acc, V: int):
    """acc[0] + ... + acc[V - 1]: the lanes of a vector accumulator, summed once."""
    total = acc[0]
    for lane in range(1, V):
        total = total + acc[lane]
    return total
