"""ONNX's linear quantization ops as IR arithmetic, following the ONNX reference implementation:
QuantizeLinear (y = saturate(round_half_even(x / scale) + zero_point)), DequantizeLinear
((x - zero_point) * scale), DynamicQuantizeLinear (uint8 over the range [min(0, min x), max(0, max x)]),
MatMulInteger (int32 products of zero-point-shifted operands) and QLinearMatMul (those products rescaled
by a_scale * b_scale / y_scale in float64, rounded half to even, saturated). Scales and zero points are
per tensor (scalars) or per axis (1-D along `axis`); blocked quantization (block_size) and the 4-bit and
float8 types are refused."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from onnx import helper

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, onnx_axis

QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
          "int32": (-2 ** 31, 2 ** 31 - 1)}


def per_axis(ctx: Ctx, param: Value, rank: int, axis: int) -> Value:
    """A scale or zero point shaped to broadcast against a rank-`rank` tensor: a scalar as is, a 1-D one
    along `axis`."""
    if param.type.rank == 0:
        return param
    if param.type.rank != 1:
        raise ConversionError(f"a scale or zero point of rank {param.type.rank} (blocked quantization) is not "
                              "supported")
    shape = [1] * rank
    shape[axis] = param.type.shape[0]
    return ctx.emit("reshape", [param], shape=tuple(shape))


def saturate(ctx: Ctx, v: Value, dtype: str) -> Value:
    """round half to even, clip to dtype's range, cast (v is a float tensor). inf saturates to the range's
    end, NaN to its low end, as ONNX Runtime does (a NaN cast to an integer is undefined)."""
    lo, hi = QRANGE[dtype]
    rounded = ctx.emit("round", [v])
    clipped = ctx.emit("clamp", [rounded], min=float(lo), max=float(hi))
    clipped = ctx.emit("where", [ctx.emit("isnan", [v]), ctx.const(float(lo), v.type.dtype), clipped])
    return ctx.as_dtype(clipped, dtype)


def _quant_params(ctx: Ctx, node: OnnxNode, x: Value, first: int) -> tuple[Value, Value | None]:
    if node.attr("block_size", 0):
        raise ConversionError("blocked quantization (block_size) is not supported")
    scale = ctx.value(node, first)
    zp = ctx.value(node, first + 1) if ctx.input(node, first + 1) is not None else None
    if scale.type.rank == 0 and (zp is None or zp.type.rank == 0):
        return scale, zp
    axis = onnx_axis(int(node.attr("axis", 1)), x.type.rank)  # per axis: only then does `axis` matter
    return per_axis(ctx, scale, x.type.rank, axis), None if zp is None else per_axis(ctx, zp, x.type.rank, axis)


def _quantize(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    scale, zp = _quant_params(ctx, node, x, 1)
    out = node.attr("output_dtype", 0)
    dtype = zp.type.dtype if zp is not None else (
        str(np.dtype(helper.tensor_dtype_to_np_dtype(out))) if out else "uint8")
    if dtype not in QRANGE or dtype == "int32":
        raise ConversionError(f"QuantizeLinear to {dtype} (recc quantizes to uint8, int8, uint16, int16)")
    if not x.type.dtype.startswith(("float", "bfloat")):  # int32 x: divided as the reference does, in float64
        x = ctx.as_dtype(x, "float64")
    q = ctx.emit("div", [x, ctx.as_dtype(scale, x.type.dtype)])
    q = ctx.emit("round", [q])
    q = ctx.as_dtype(q, "float32" if x.type.dtype != "float64" else "float64")
    if zp is not None:
        q = ctx.emit("add", [q, ctx.as_dtype(zp, q.type.dtype)])
    return saturate(ctx, q, dtype)


def _dequantize(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    if x.type.dtype not in QRANGE:
        raise ConversionError(f"DequantizeLinear of {x.type.dtype} (recc reads uint8, int8, uint16, int16, int32)")
    scale, zp = _quant_params(ctx, node, x, 1)
    v = ctx.as_dtype(x, "float32")
    if zp is not None:
        v = ctx.emit("sub", [v, ctx.as_dtype(zp, "float32")])
    return ctx.as_dtype(ctx.emit("mul", [v, ctx.as_dtype(scale, "float32")]), scale.type.dtype)


def _dynamic_quantize(ctx: Ctx, node: OnnxNode) -> tuple[Value, Value, Value]:
    x = ctx.value(node, 0)
    if x.type.dtype != "float32":
        raise ConversionError(f"DynamicQuantizeLinear of {x.type.dtype} (ONNX defines it for float32)")
    axes = tuple(range(x.type.rank))
    zero = ctx.const(0.0, "float32")
    # the range always holds 0, so reading NaN as 0 leaves it as ONNX Runtime computes it (NaN ignored)
    finite = ctx.emit("where", [ctx.emit("isnan", [x]), zero, x])
    lo = ctx.emit("minimum", [ctx.emit("min", [finite], axes=axes, keepdims=False), zero])
    hi = ctx.emit("maximum", [ctx.emit("max", [finite], axes=axes, keepdims=False), zero])
    scale = ctx.emit("div", [ctx.emit("sub", [hi, lo]), ctx.const(255.0, "float32")])
    # an all-zero x has no range: scale 1 (ONNX Runtime's choice; 0 would divide by zero below)
    scale = ctx.emit("where", [ctx.emit("eq", [scale, zero]), ctx.const(1.0, "float32"), scale])
    zp = saturate(ctx, ctx.emit("sub", [zero, ctx.emit("div", [lo, scale])]), "uint8")
    q = ctx.emit("add", [ctx.emit("round", [ctx.emit("div", [x, scale])]), ctx.as_dtype(zp, "float32")])
    return saturate(ctx, q, "uint8"), scale, zp


def shifted(ctx: Ctx, node: OnnxNode, i: int, zp_index: int, axis: int | None) -> Value:
    """Input i (uint8 / int8) as int32 minus its zero point: a scalar, or 1-D along `axis` (negative: from
    the end; per row of A is -2, per column of B -1, per output channel of a conv weight 0)."""
    v = ctx.value(node, i)
    if v.type.dtype not in ("uint8", "int8"):
        raise ConversionError(f"{node.op_type} operands must be uint8 or int8, got {v.type.dtype}")
    v32 = ctx.as_dtype(v, "int32")
    if ctx.input(node, zp_index) is None:
        return v32
    zp = ctx.as_dtype(ctx.value(node, zp_index), "int32")
    if zp.type.rank == 1 and zp.type.shape[0] == 1:
        zp = ctx.emit("reshape", [zp], shape=())
    elif zp.type.rank == 1 and axis is not None and v.type.rank >= 2:
        zp = per_axis(ctx, zp, v.type.rank, axis % v.type.rank)
    return ctx.emit("sub", [v32, zp])


def _integer_product(ctx: Ctx, a: Value, b: Value) -> Value:
    if a.type.rank < 2 or b.type.rank < 2:
        raise ConversionError("integer MatMul of a vector (rank < 2) is not supported")
    return ctx.emit("matmul", [a, b])


def _matmul_integer(ctx: Ctx, node: OnnxNode) -> Value:
    return _integer_product(ctx, shifted(ctx, node, 0, 2, -2), shifted(ctx, node, 1, 3, -1))


def requantize(ctx: Ctx, acc: Value, scales: list[Value], y_scale: Value, y_zp: Value | None, dtype: str) -> Value:
    """int32 accumulators -> saturate(round(acc * prod(scales) / y_scale) + y_zp) as the reference computes it:
    the multiplier in the scales' dtype, the product and the zero point in float64."""
    mult = scales[0]
    for s in scales[1:]:
        mult = ctx.emit("mul", [mult, ctx.as_dtype(s, mult.type.dtype)])
    mult = ctx.emit("div", [mult, ctx.as_dtype(y_scale, mult.type.dtype)])
    d = ctx.emit("mul", [ctx.as_dtype(acc, "float64"), ctx.as_dtype(mult, "float64")])
    if y_zp is not None:
        d = ctx.emit("add", [d, ctx.as_dtype(y_zp, "float64")])
    return saturate(ctx, d, dtype)


def _qlinear_matmul(ctx: Ctx, node: OnnxNode) -> Value:
    acc = _integer_product(ctx, shifted(ctx, node, 0, 2, -2), shifted(ctx, node, 3, 5, -1))
    a_scale = ctx.value(node, 1)
    if a_scale.type.rank == 1:  # per row of a: a column vector
        a_scale = ctx.emit("reshape", [a_scale], shape=(a_scale.type.shape[0], 1))
    y_zp = ctx.value(node, 7) if ctx.input(node, 7) is not None else None
    dtype = y_zp.type.dtype if y_zp is not None else ctx.value(node, 0).type.dtype
    return requantize(ctx, acc, [a_scale, ctx.value(node, 4)], ctx.value(node, 6), y_zp, dtype)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "QuantizeLinear": _quantize, "DequantizeLinear": _dequantize, "DynamicQuantizeLinear": _dynamic_quantize,
    "MatMulInteger": _matmul_integer, "QLinearMatMul": _qlinear_matmul,
}

__all__ = ["CONVERTERS", "QRANGE", "per_axis", "requantize", "saturate", "shifted"]
