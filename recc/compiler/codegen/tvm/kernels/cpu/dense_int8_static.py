"""The quantize step of the int8 dense kernels (dense_int8.py) for calibrated, static activations
(`calibrate=N`; semantics: recc/compiler/quantize.py, `act`): every row quantized with the layer's one
scale xs and zero point zp, baked into the kernel as constants, in a single pass over the row (no
per-row min/max pass first). Values outside the calibrated range clamp to 0 or 255. The same pass keeps
the largest exponent field it sees, so a row holding NaN or +-inf still gets P[r] = (NaN, NaN): its
outputs are NaN, as under dynamic quantization (integer bits: fast-math may fold x - x to 0)."""

from __future__ import annotations

from tvm.script import tirx as T

from recc.compiler.quantize import static_params


def static_quantize_macro(K: int, row_bytes: int, scale: float, zero_point: float, dtype: str = "uint8"):
    """The macro `quantize(X, Xq, P, r)` of dense_int8.quantize_macro with fixed (scale, zero point):
    row r of X[m, K] to uint8 values in Xq[r, :K] (of `dtype`: int16 for the AVX2 kernel), Xq[r,
    K:row_bytes] zero, P[r] = (xs, xs * zp), or NaNs for a non-finite row."""
    V = 16
    KV = K // V * V
    xs, inv, zp = static_params(scale, zero_point)
    xs_zp = xs * zp

    def exponent(x):
        return T.bitwise_and(T.reinterpret("int32", x), T.int32(0x7F800000))

    def to_u8(x):  # clamped first (a float -> int conversion out of range is undefined); truncation = floor
        v = x * T.float32(float(inv)) + T.float32(float(zp))
        return T.Cast(dtype, T.Cast("int32", T.min(T.float32(255), T.max(T.float32(0), v)) + T.float32(0.5)))

    @T.macro
    def row(X, Xq, P, r):
        fin = T.alloc_buffer((V,), "int32")  # max exponent bits: 0x7F800000 where NaN or +-inf
        for v in T.vectorized(V):
            fin[v] = T.int32(0)
        for k0 in range(KV // V):
            for v in T.vectorized(V):
                Xq[r, k0 * V + v] = to_u8(X[r, k0 * V + v])
                fin[v] = T.max(fin[v], exponent(X[r, k0 * V + v]))
        for k in range(KV, K):
            Xq[r, k] = to_u8(X[r, k])
            fin[0] = T.max(fin[0], exponent(X[r, k]))
        for v in range(1, V):
            fin[0] = T.max(fin[0], fin[v])
        P[r, 0] = T.Select(fin[0] == T.int32(0x7F800000), T.float32(float("nan")), T.float32(float(xs)))
        P[r, 1] = T.Select(fin[0] == T.int32(0x7F800000), T.float32(float("nan")), T.float32(float(xs_zp)))
        for k in range(K, row_bytes):
            Xq[r, k] = T.Cast(dtype, 0)

    return row
