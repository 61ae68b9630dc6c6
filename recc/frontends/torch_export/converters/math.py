"""Core ATen math: elementwise functions and predicates, integer and rounding division, bitwise and
logical ops, prod / arg / any / all reductions, running sums and products, variance, layer norm, flip and
constant padding. Operands take torch's result dtype (an int input to sin computes in float32)."""

from __future__ import annotations

from typing import Any

import torch

from recc.compiler.ir import Value
from recc.compiler.ir.types import numel
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts

FLOAT_FUNCTIONS = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
                   "floor", "ceil", "round", "trunc", "sign", "log1p", "expm1", "log2", "log10", "erfinv")


def _unary(op: str):
    def convert(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any, **kw: Any) -> Value:
        return ctx.emit(op, [ctx.as_dtype(ctx.value(x), ctx.out_dtype(node))])
    return convert


for _name in FLOAT_FUNCTIONS:
    converts(f"{_name}.default", f"{_name}_.default")(_unary(_name))
converts("sgn.default")(_unary("sign"))
converts("bitwise_not.default")(_unary("bitwise_not"))


def _predicate(op: str):
    def convert(ctx: Ctx, node: torch.fx.Node, x: Any) -> Value:
        return ctx.emit(op, [ctx.value(x)])
    return convert


for _name in ("isnan", "isinf", "isfinite"):
    converts(f"{_name}.default")(_predicate(_name))


@converts("round.decimals")
def _round_decimals(ctx: Ctx, node: torch.fx.Node, x: Any, decimals: int = 0) -> Value:
    """torch: round(x * 10^d) / 10^d (d < 0: round(x / 10^-d) * 10^-d)."""
    xv = ctx.value(x)
    ten = ctx.const(10.0 ** abs(decimals), xv.type.dtype)
    scaled = ctx.emit("mul" if decimals >= 0 else "div", [xv, ten])
    return ctx.emit("div" if decimals >= 0 else "mul", [ctx.emit("round", [scaled]), ten])


def _operands(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any, dtype: str) -> tuple[Value, Value]:
    return ctx.operand(a, dtype), ctx.operand(b, dtype)


def _binary(op: str):
    def convert(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any) -> Value:
        return ctx.emit(op, list(_operands(ctx, node, a, b, ctx.out_dtype(node))))
    return convert


for _names, _op in ((("remainder.Tensor", "remainder.Scalar", "remainder.Scalar_Tensor"), "remainder"),
                    (("fmod.Tensor", "fmod.Scalar"), "fmod"), (("atan2.default", "arctan2.default"), "atan2"),
                    (("floor_divide.default", "floor_divide.Scalar"), "floor_divide"),
                    (("bitwise_and.Tensor", "bitwise_and.Scalar"), "bitwise_and"),
                    (("bitwise_or.Tensor", "bitwise_or.Scalar"), "bitwise_or"),
                    (("bitwise_xor.Tensor", "bitwise_xor.Scalar"), "bitwise_xor"),
                    (("bitwise_left_shift.Tensor", "bitwise_left_shift.Tensor_Scalar",
                      "__lshift__.Tensor", "__lshift__.Scalar"), "left_shift"),
                    (("bitwise_right_shift.Tensor", "bitwise_right_shift.Tensor_Scalar",
                      "__rshift__.Tensor", "__rshift__.Scalar"), "right_shift")):
    converts(*_names)(_binary(_op))


@converts("logical_and.default", "logical_or.default", "logical_xor.default")
def _logical(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any) -> Value:
    op = node.target._schema.name.split("::")[-1]
    x, y = _operands(ctx, node, a, b, "bool")
    return ctx.emit(op, [x, y])


@converts("div.Tensor_mode", "div.Scalar_mode")
def _div_mode(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any, rounding_mode: str | None = None) -> Value:
    op = {None: "div", "floor": "floor_divide", "trunc": "trunc_divide"}.get(rounding_mode)
    if op is None:
        raise ConversionError(f"div rounding_mode {rounding_mode!r}")
    return ctx.emit(op, list(_operands(ctx, node, a, b, ctx.out_dtype(node))))


def _axes(xv: Value, dims: Any) -> tuple[int, ...]:
    if isinstance(dims, int):
        dims = [dims]
    return tuple(range(xv.type.rank)) if dims in (None, []) else tuple(sorted(d % max(xv.type.rank, 1)
                                                                             for d in dims))


@converts("prod.default", "prod.dim_int", "any.default", "any.dim", "any.dims", "all.default", "all.dim",
          "all.dims")
def _reduce(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any = None, keepdim: bool = False, **kw: Any) -> Value:
    op = node.target._schema.name.split("::")[-1]
    if op == "prod" and node.target._overloadname == "default":
        dims, keepdim = None, False  # prod.default(x, *, dtype)
    xv = ctx.value(x)
    if op == "prod":
        xv = ctx.as_dtype(xv, ctx.out_dtype(node))
    if xv.type.rank == 0:
        return xv if op == "prod" else ctx.emit("ne", [xv, ctx.const(0, xv.type.dtype)])
    out = ctx.emit(op, [xv], axes=_axes(xv, dims), keepdims=bool(keepdim))
    return ctx.as_dtype(out, ctx.out_dtype(node))


@converts("argmax.default", "argmin.default")
def _arg(ctx: Ctx, node: torch.fx.Node, x: Any, dim: Any = None, keepdim: bool = False) -> Value:
    op = node.target._schema.name.split("::")[-1]
    xv = ctx.value(x)
    if dim is None or xv.type.rank == 0:
        flat = ctx.emit("reshape", [xv], shape=(numel(xv.type.shape),))
        out = ctx.emit(op, [flat], axes=(0,), keepdims=False)
        return ctx.emit("reshape", [out], shape=ctx.out_shape(node)) if keepdim or xv.type.rank == 0 else out
    return ctx.emit(op, [xv], axes=(dim % xv.type.rank,), keepdims=bool(keepdim))


@converts("cumsum.default", "cumprod.default")
def _cumulative(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, dtype: Any = None) -> Value:
    op = node.target._schema.name.split("::")[-1]
    xv = ctx.as_dtype(ctx.value(x), ctx.out_dtype(node))
    if xv.type.rank == 0:
        return xv
    return ctx.emit(op, [xv], axis=dim % xv.type.rank)


@converts("var.correction", "var.dim", "std.correction", "std.dim")
def _var(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any = None, *rest: Any, correction: Any = None,
         keepdim: bool = False, **kw: Any) -> Value:
    if node.target._overloadname == "dim":  # var.dim(x, dim, unbiased=True, keepdim=False)
        unbiased = rest[0] if rest else kw.get("unbiased", True)
        keepdim = rest[1] if len(rest) > 1 else keepdim
        correction = 1 if unbiased else 0
    xv = ctx.value(x)
    axes = _axes(xv, dims)
    count = numel(tuple(xv.type.shape[a] for a in axes))
    if not isinstance(count, int):
        raise ConversionError("variance over a symbolic dim")
    correction = 1 if correction is None else correction
    mean = ctx.emit("mean", [xv], axes=axes, keepdims=True)
    centered = ctx.emit("sub", [xv, mean])
    total = ctx.emit("sum", [ctx.emit("mul", [centered, centered])], axes=axes, keepdims=bool(keepdim))
    var = ctx.emit("div", [total, ctx.const(max(count - correction, 0), xv.type.dtype)])
    out = ctx.emit("sqrt", [var]) if node.target._schema.name.endswith("std") else var
    shape = ctx.out_shape(node)  # a full reduction: the [1] constant divisor broadcast it to [1]
    return out if out.type.shape == shape else ctx.emit("reshape", [out], shape=shape)


@converts("native_layer_norm.default", "layer_norm.default")
def _layer_norm(ctx: Ctx, node: torch.fx.Node, x: Any, shape: Any, weight: Any = None, bias: Any = None,
                eps: float = 1e-5, *rest: Any) -> Any:
    xv = ctx.value(x)
    axes = tuple(range(xv.type.rank - len(shape), xv.type.rank))
    mean = ctx.emit("mean", [xv], axes=axes, keepdims=True)
    centered = ctx.emit("sub", [xv, mean])
    var = ctx.emit("mean", [ctx.emit("mul", [centered, centered])], axes=axes, keepdims=True)
    rstd = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(eps, xv.type.dtype)])])
    out = ctx.emit("mul", [centered, rstd])
    if weight is not None:
        out = ctx.emit("mul", [out, ctx.value(weight)])
    if bias is not None:
        out = ctx.emit("add", [out, ctx.value(bias)])
    if node.target._schema.name.endswith("native_layer_norm"):
        return out, mean, rstd
    return out


@converts("flip.default")
def _flip(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any) -> Value:
    xv = ctx.value(x)
    axes = tuple(sorted({d % xv.type.rank for d in dims})) if xv.type.rank else ()
    return ctx.emit("flip", [xv], axes=axes) if axes else xv


@converts("constant_pad_nd.default")
def _pad(ctx: Ctx, node: torch.fx.Node, x: Any, pad: Any, value: Any = 0) -> Value:
    """torch lists (before, after) pairs from the last axis backwards."""
    xv = ctx.value(x)
    pads = [(0, 0)] * xv.type.rank
    for i in range(len(pad) // 2):
        pads[xv.type.rank - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return ctx.emit("pad", [xv], pads=tuple(pads), value=value)


@converts("max.dim", "min.dim")
def _extremum_dim(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, keepdim: bool = False) -> tuple[Value, Value]:
    """(values, indices) along dim; NaN wins, as in torch."""
    reduce = node.target._schema.name.split("::")[-1]
    xv = ctx.value(x)
    if xv.type.rank == 0:
        return xv, ctx.const(0, "int64")
    axis = dim % xv.type.rank
    values = ctx.emit(reduce, [xv], axes=(axis,), keepdims=bool(keepdim))
    return values, ctx.emit(f"arg{reduce}", [xv], axes=(axis,), keepdims=bool(keepdim))


@converts("clamp.Tensor")
def _clamp_tensor(ctx: Ctx, node: torch.fx.Node, x: Any, lo: Any = None, hi: Any = None) -> Value:
    """min(max(x, lo), hi) with tensor bounds; a NaN anywhere gives NaN (torch.clamp)."""
    dtype = ctx.out_dtype(node)
    out = ctx.as_dtype(ctx.value(x), dtype)
    if lo is not None:
        out = ctx.emit("maximum", [out, ctx.operand(lo, dtype)])
    if hi is not None:
        out = ctx.emit("minimum", [out, ctx.operand(hi, dtype)])
    return out


@converts("pow.Scalar")
def _pow_scalar(ctx: Ctx, node: torch.fx.Node, base: Any, exponent: Any) -> Value:
    dtype = ctx.out_dtype(node)
    return ctx.emit("pow", [ctx.const(base, dtype), ctx.as_dtype(ctx.value(exponent), dtype)])


@converts("fill.Scalar", "fill.Tensor")
def _fill(ctx: Ctx, node: torch.fx.Node, x: Any, value: Any) -> Value:
    shape = ctx.out_shape(node)
    dtype = ctx.out_dtype(node)
    v = ctx.operand(value, dtype)
    v = v if v.type.rank == len(shape) else ctx.emit("reshape", [v], shape=(1,) * len(shape))
    return ctx.emit("expand", [v], shape=shape)


@converts("elu.default")
def _elu(ctx: Ctx, node: torch.fx.Node, x: Any, alpha: Any = 1.0, scale: Any = 1.0, input_scale: Any = 1.0) -> Value:
    """scale * x for x > 0, else scale * alpha * expm1(x * input_scale) (NaN stays NaN)."""
    xv = ctx.value(x)
    dtype = xv.type.dtype
    negative = ctx.emit("mul", [ctx.emit("expm1", [ctx.emit("mul", [xv, ctx.const(input_scale, dtype)])]),
                                ctx.const(alpha * scale, dtype)])
    positive = ctx.emit("mul", [xv, ctx.const(scale, dtype)])
    return ctx.emit("where", [ctx.emit("gt", [xv, ctx.const(0.0, dtype)]), positive, negative])


@converts("native_group_norm.default")
def _group_norm(ctx: Ctx, node: torch.fx.Node, x: Any, weight: Any, bias: Any, n: Any, c: Any, hw: Any,
                groups: int, eps: float) -> tuple[Value, Value, Value]:
    """Statistics over [C/G, *S] per sample and group; then the per-channel affine. (out, mean, rstd)."""
    xv = ctx.value(x)
    shape, dtype = xv.type.shape, xv.type.dtype
    spatial = numel(shape[2:]) if len(shape) > 2 else 1
    if not isinstance(shape[1], int) or not isinstance(spatial, int):
        raise ConversionError("group_norm over symbolic channel or spatial dims")
    grouped = ctx.emit("reshape", [xv], shape=(shape[0], groups, shape[1] // groups * spatial))
    mean = ctx.emit("mean", [grouped], axes=(2,), keepdims=True)
    centered = ctx.emit("sub", [grouped, mean])
    var = ctx.emit("mean", [ctx.emit("mul", [centered, centered])], axes=(2,), keepdims=True)
    rstd = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(eps, dtype)])])
    out = ctx.emit("reshape", [ctx.emit("mul", [centered, rstd])], shape=shape)
    per_channel = (shape[1],) + (1,) * (len(shape) - 2)
    if weight is not None:
        out = ctx.emit("mul", [out, ctx.emit("reshape", [ctx.value(weight)], shape=per_channel)])
    if bias is not None:
        out = ctx.emit("add", [out, ctx.emit("reshape", [ctx.value(bias)], shape=per_channel)])
    stats = (shape[0], groups)
    return out, ctx.emit("reshape", [mean], shape=stats), ctx.emit("reshape", [rstd], shape=stats)
