"""Elementwise math beyond the basic arithmetic: variadic Sum/Mean/Max/Min, logic and bitwise ops, Mod,
rounding, NaN/Inf predicates, the activations ONNX defines by formula, Pow across types, Clip on
integers, Trilu, CumSum, ArgMax/ArgMin and Hardmax."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir.types import is_float, is_int
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, is_static, onnx_axis
from recc.frontends.onnx.shapes import reshape


def _variadic(op: str, mean: bool = False) -> Callable[[Ctx, OnnxNode], Any]:
    """Sum/Mean/Max/Min over any number of broadcasting inputs, folded left to right."""
    def convert(ctx: Ctx, node: OnnxNode) -> Any:
        items = [ctx.input(node, i) for i in range(len(node.inputs))]
        dtype = next((v.type.dtype for v in items if isinstance(v, Value)), None)
        if dtype is None:
            arrays = [np.asarray(v) for v in items]
            fold = {"add": np.add, "maximum": np.maximum, "minimum": np.minimum}[op]
            out = arrays[0]
            for a in arrays[1:]:
                out = fold(out, a)
            return (out / len(arrays)).astype(arrays[0].dtype) if mean else out
        values = [ctx.value(node, i, dtype) for i in range(len(items))]
        out = values[0]
        for v in values[1:]:
            out = ctx.emit(op, [out, v])
        if len(values) == 1:  # the result is a new tensor, broadcast like any other
            out = ctx.emit("add", [out, ctx.const(0, dtype)]) if op == "add" else ctx.emit(op, [out, out])
        return ctx.emit("div", [out, ctx.const(len(values), dtype)]) if mean else out
    return convert


def _binary(op: str) -> Callable[[Ctx, OnnxNode], Value]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        return ctx.emit(op, [x, ctx.value(node, 1, x.type.dtype)])
    return convert


def _unary(op: str) -> Callable[[Ctx, OnnxNode], Value]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        return ctx.emit(op, [ctx.value(node, 0)])
    return convert


def _mod(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    fmod = int(node.attr("fmod", 0))
    if is_float(x.type.dtype) and not fmod:
        raise ConversionError("Mod on floating-point inputs requires fmod=1")
    return ctx.emit("fmod" if fmod else "remainder", [x, ctx.value(node, 1, x.type.dtype)])


def _bit_shift(ctx: Ctx, node: OnnxNode) -> Value:
    direction = node.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ConversionError(f"BitShift direction {direction!r}")
    x = ctx.value(node, 0)
    return ctx.emit("left_shift" if direction == "LEFT" else "right_shift", [x, ctx.value(node, 1, x.type.dtype)])


def _is_inf(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    out = ctx.emit("isinf", [x])
    positive, negative = int(node.attr("detect_positive", 1)), int(node.attr("detect_negative", 1))
    if positive and negative:
        return out
    if not positive and not negative:
        return ctx.emit("logical_and", [out, ctx.const(False, "bool")])
    side = ctx.emit("gt" if positive else "lt", [x, ctx.const(0, x.type.dtype)])
    return ctx.emit("logical_and", [out, side])


def scalar(ctx: Ctx, v: Value, value: float) -> Value:
    return ctx.const(value, v.type.dtype)


def _formula(build: Callable[[Ctx, OnnxNode, Value], Value]) -> Callable[[Ctx, OnnxNode], Value]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        if not is_float(x.type.dtype):
            raise ConversionError(f"{node.op_type} on {x.type.dtype}")
        return build(ctx, node, x)
    return convert


def _elu(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    alpha = float(node.attr("alpha", 1.0))
    neg = ctx.emit("mul", [ctx.emit("expm1", [x]), scalar(ctx, x, alpha)])
    return ctx.emit("where", [ctx.emit("lt", [x, scalar(ctx, x, 0)]), neg, x])


def _selu(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    alpha, gamma = float(node.attr("alpha", 1.67326319217681884765625)), float(node.attr("gamma", 1.05070102214813232421875))
    neg = ctx.emit("mul", [ctx.emit("expm1", [x]), scalar(ctx, x, alpha)])
    out = ctx.emit("where", [ctx.emit("le", [x, scalar(ctx, x, 0)]), neg, x])
    return ctx.emit("mul", [out, scalar(ctx, x, gamma)])


def _celu(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    alpha = float(node.attr("alpha", 1.0))
    neg = ctx.emit("mul", [ctx.emit("expm1", [ctx.emit("div", [x, scalar(ctx, x, alpha)])]), scalar(ctx, x, alpha)])
    return ctx.emit("add", [ctx.emit("relu", [x]), ctx.emit("minimum", [neg, scalar(ctx, x, 0)])])


def _hard_sigmoid(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    lin = ctx.emit("add", [ctx.emit("mul", [x, scalar(ctx, x, alpha)]), scalar(ctx, x, beta)])
    return ctx.emit("clamp", [lin], min=0.0, max=1.0)


def _hard_swish(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    lin = ctx.emit("add", [ctx.emit("mul", [x, scalar(ctx, x, 1 / 6)]), scalar(ctx, x, 0.5)])
    return ctx.emit("mul", [x, ctx.emit("clamp", [lin], min=0.0, max=1.0)])


def _softplus(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    return ctx.emit("log", [ctx.emit("add", [ctx.emit("exp", [x]), scalar(ctx, x, 1)])])


def _softsign(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    return ctx.emit("div", [x, ctx.emit("add", [ctx.emit("abs", [x]), scalar(ctx, x, 1)])])


def _mish(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    return ctx.emit("mul", [x, ctx.emit("tanh", [_softplus(ctx, node, x)])])


def _thresholded_relu(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    alpha = float(node.attr("alpha", 1.0))
    return ctx.emit("where", [ctx.emit("gt", [x, scalar(ctx, x, alpha)]), x, scalar(ctx, x, 0)])


def _shrink(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))
    zero = scalar(ctx, x, 0)
    low = ctx.emit("where", [ctx.emit("lt", [x, scalar(ctx, x, -lambd)]), ctx.emit("add", [x, scalar(ctx, x, bias)]),
                             zero])
    return ctx.emit("where", [ctx.emit("gt", [x, scalar(ctx, x, lambd)]), ctx.emit("sub", [x, scalar(ctx, x, bias)]),
                              low])


def _prelu(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    slope = ctx.value(node, 1, x.type.dtype)
    zero = scalar(ctx, x, 0)
    return ctx.emit("where", [ctx.emit("lt", [x, zero]), ctx.emit("mul", [x, slope]), x])


def _pow(ctx: Ctx, node: OnnxNode) -> Any:
    a, b = ctx.input(node, 0), ctx.input(node, 1)
    if is_static(a) and is_static(b) and a.dtype != object and b.dtype != object:
        return np.power(a, b).astype(a.dtype)
    x, y = ctx.value(node, 0), ctx.value(node, 1)
    if is_float(x.type.dtype):
        return ctx.emit("pow", [x, ctx.as_dtype(y, x.type.dtype)])
    if is_float(y.type.dtype):  # an integer base: computed in float64 and truncated to the base's type
        wide = ctx.emit("pow", [ctx.as_dtype(x, "float64"), ctx.as_dtype(y, "float64")])
        return ctx.as_dtype(wide, x.type.dtype)
    return ctx.emit("pow", [x, ctx.as_dtype(y, x.type.dtype)])  # integers: exact, by squaring


def int_clip(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    """Clip on integers: maximum and minimum with the bounds (as ONNX: min is applied first)."""
    if ctx.opset < 11:
        bounds = [node.attr("min"), node.attr("max")]
    else:
        bounds = [None if (b := ctx.static(node, i, "Clip bound")) is None else np.ravel(b)[0] for i in (1, 2)]
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:  # ONNX: all become max
        bounds[0] = bounds[1]
    out = x
    for op, bound in (("maximum", bounds[0]), ("minimum", bounds[1])):
        if bound is not None:
            out = ctx.emit(op, [out, ctx.const(bound, x.type.dtype)])
    return out if out is not x else ctx.emit("maximum", [x, x])


def _trilu(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    k_array = ctx.static(node, 1, "Trilu's k")
    k = 0 if k_array is None else int(np.ravel(k_array)[0])
    rows, cols = x.type.shape[-2:]
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise ConversionError("Trilu over symbolic dims")
    r, c = np.arange(rows)[:, None], np.arange(cols)[None, :]
    keep = (c - r >= k) if int(node.attr("upper", 1)) else (c - r <= k)
    zero = ctx.const(np.zeros((), x.type.dtype), x.type.dtype)
    return ctx.emit("where", [ctx.const(keep, "bool"), x, zero])


def _cumsum(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    axis_array = ctx.static(node, 1, "CumSum's axis")
    axis = onnx_axis(int(np.ravel(axis_array)[0]), x.type.rank)
    reverse, exclusive = int(node.attr("reverse", 0)), int(node.attr("exclusive", 0))
    out = ctx.emit("flip", [x], axes=(axis,)) if reverse else x
    if exclusive:  # shift by one along the axis: a zero first, the last element dropped
        pads = tuple((1, -1) if a == axis else (0, 0) for a in range(x.type.rank))
        out = ctx.emit("pad", [out], pads=pads, value=0)
    out = ctx.emit("cumsum", [out], axis=axis)
    return ctx.emit("flip", [out], axes=(axis,)) if reverse else out


def _arg(op: str) -> Callable[[Ctx, OnnxNode], Value]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        axis = onnx_axis(int(node.attr("axis", 0)), x.type.rank)
        keep = bool(node.attr("keepdims", 1))
        if not int(node.attr("select_last_index", 0)):
            return ctx.emit(op, [x], axes=(axis,), keepdims=keep)
        n = x.type.shape[axis]
        if not isinstance(n, int):
            raise ConversionError("select_last_index over a symbolic dim")
        first = ctx.emit(op, [ctx.emit("flip", [x], axes=(axis,))], axes=(axis,), keepdims=keep)
        return ctx.emit("sub", [ctx.const(n - 1, "int64"), first])
    return convert


def coerced_2d(ctx: Ctx, node: OnnxNode, x: Value, default_axis: int) -> tuple[Value, int, bool]:
    """Softmax-family ops before opset 13 flatten the input to 2-D at `axis` and work on the last axis:
    (the input, viewed so, the axis to use, whether it was reshaped)."""
    axis = onnx_axis(int(node.attr("axis", default_axis)), x.type.rank)
    if ctx.opset >= 13 or axis == x.type.rank - 1:
        return x, axis, False
    shape = x.type.shape
    rows, cols = 1, 1
    for d in shape[:axis]:
        rows *= d
    for d in shape[axis:]:
        cols *= d
    return reshape(ctx, x, [rows, cols], allow_zero=True), 1, True


def _hardmax(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    view, axis, reshaped = coerced_2d(ctx, node, x, -1 if ctx.opset >= 13 else 1)
    n = view.type.shape[axis]
    index = ctx.emit("argmax", [view], axes=(axis,), keepdims=True)
    positions = np.arange(n).reshape([n if a == axis else 1 for a in range(view.type.rank)])
    hot = ctx.emit("eq", [index, ctx.const(positions, "int64")])
    out = ctx.as_dtype(hot, x.type.dtype)
    return reshape(ctx, out, list(x.type.shape), allow_zero=True) if reshaped else out


def _not_static(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    return np.invert(x) if is_static(x) else ctx.emit("bitwise_not", [ctx.value(node, 0)])


def _int_only(name: str, convert: Callable[[Ctx, OnnxNode], Value]) -> Callable[[Ctx, OnnxNode], Value]:
    def checked(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        if not (is_int(x.type.dtype) or x.type.dtype == "bool"):
            raise ConversionError(f"{name} on {x.type.dtype}")
        return convert(ctx, node)
    return checked


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Sum": _variadic("add"), "Mean": _variadic("add", mean=True), "Max": _variadic("maximum"),
    "Min": _variadic("minimum"),
    "And": _binary("logical_and"), "Or": _binary("logical_or"), "Xor": _binary("logical_xor"),
    "BitwiseAnd": _int_only("BitwiseAnd", _binary("bitwise_and")),
    "BitwiseOr": _int_only("BitwiseOr", _binary("bitwise_or")),
    "BitwiseXor": _int_only("BitwiseXor", _binary("bitwise_xor")),
    "BitwiseNot": _int_only("BitwiseNot", _not_static), "BitShift": _bit_shift, "Mod": _mod,
    **{op: _unary(ir) for op, ir in (
        ("Floor", "floor"), ("Ceil", "ceil"), ("Round", "round"), ("Sign", "sign"), ("IsNaN", "isnan"),
        ("Sin", "sin"), ("Cos", "cos"), ("Tan", "tan"), ("Asin", "asin"), ("Acos", "acos"), ("Atan", "atan"),
        ("Sinh", "sinh"), ("Cosh", "cosh"), ("Asinh", "asinh"), ("Acosh", "acosh"), ("Atanh", "atanh"))},
    "IsInf": _is_inf, "Elu": _formula(_elu), "Selu": _formula(_selu), "Celu": _formula(_celu),
    "HardSigmoid": _formula(_hard_sigmoid), "HardSwish": _formula(_hard_swish), "Softplus": _formula(_softplus),
    "Softsign": _formula(_softsign), "Mish": _formula(_mish), "ThresholdedRelu": _formula(_thresholded_relu),
    "Shrink": _shrink, "PRelu": _prelu, "Pow": _pow, "Trilu": _trilu, "CumSum": _cumsum,
    "ArgMax": _arg("argmax"), "ArgMin": _arg("argmin"), "Hardmax": _hardmax,
}

__all__ = ["CONVERTERS", "coerced_2d", "scalar", "int_clip"]
