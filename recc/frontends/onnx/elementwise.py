"""Elementwise ONNX ops: arithmetic (also on import-time shape arrays), activations, comparisons, Where,
Cast, Clip, Softmax."""

from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from recc.compiler.interpreter import KERNELS
from recc.compiler.ir import Value
from recc.compiler.ir.types import Sym, dim_div, dim_mul, is_float
from recc.frontends.onnx.arith import int_clip
from recc.frontends.onnx.context import (ConversionError, Ctx, Lazy, OnnxNode, ir_dtype, is_static, is_symbolic,
                                         onnx_axis)


def _dim_op(name: str) -> Callable[[Any, Any], Any]:
    """Python arithmetic on ints and symbolic dims (object arrays of shapes)."""
    def apply(a: Any, b: Any) -> Any:
        if not isinstance(a, Sym) and not isinstance(b, Sym):
            if name == "div":
                return a // b if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) else a / b
            return {"add": operator.add, "sub": operator.sub, "mul": operator.mul}[name](a, b)
        if name == "mul":
            return dim_mul(int(a) if not isinstance(a, Sym) else a, int(b) if not isinstance(b, Sym) else b)
        if name == "div":
            out = dim_div(a, int(b) if not isinstance(b, Sym) else b)
            if out is not None:
                return out
        raise ConversionError(f"cannot compute {a} {name} {b} at import time (symbolic)")
    return apply


def _static_binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = (x.astype(np.int64) if x.dtype == object and not is_symbolic(x) else x for x in (a, b))
    if a.dtype != object and b.dtype != object:
        numpy_op = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
                    "maximum": np.maximum, "minimum": np.minimum, "eq": np.equal, "lt": np.less,
                    "gt": np.greater, "le": np.less_equal, "ge": np.greater_equal}[op]
        if op == "div" and np.issubdtype(a.dtype, np.integer):
            return np.asarray(np.trunc(a / b).astype(a.dtype))
        return np.asarray(numpy_op(a, b))
    if op not in ("add", "sub", "mul", "div"):
        raise ConversionError(f"cannot compute {op} on symbolic sizes at import time")
    return np.asarray(np.frompyfunc(_dim_op(op), 2, 1)(a, b), dtype=object)


def _binary(op: str) -> Callable[[Ctx, OnnxNode], Any]:
    def convert(ctx: Ctx, node: OnnxNode) -> Any:
        a, b = ctx.input(node, 0), ctx.input(node, 1)
        if is_static(a) and is_static(b):
            try:
                return _static_binary(op, a, b)
            except ConversionError as e:  # only an error if something uses it as data
                return Lazy(f"the result of {node.describe()} ({e})")
        if isinstance(a, Lazy) or isinstance(b, Lazy):
            return Lazy(f"the result of {node.describe()} on {(a if isinstance(a, Lazy) else b).what}")
        dtype = (a if isinstance(a, Value) else b).type.dtype
        x, y = ctx.value(node, 0, dtype), ctx.value(node, 1, dtype)
        if op in ("eq", "lt", "gt", "le", "ge") and x.type.dtype != y.type.dtype:
            y = ctx.as_dtype(y, x.type.dtype)
        return ctx.emit(op, [x, y])
    return convert


def _unary(op: str, **fixed: Any) -> Callable[[Ctx, OnnxNode], Any]:
    def convert(ctx: Ctx, node: OnnxNode) -> Any:
        x = ctx.input(node, 0)
        if is_static(x) and x.dtype != object:  # shape arithmetic (a Neg of an axis): folded, as the IR computes it
            return np.asarray(KERNELS[op]([x], fixed))
        return ctx.emit(op, [ctx.value(node, 0)], **fixed)
    return convert


def _not(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    return np.logical_not(x) if is_static(x) else ctx.emit("logical_not", [ctx.value(node, 0)])


def _leaky_relu(ctx: Ctx, node: OnnxNode) -> Value:
    return ctx.emit("leaky_relu", [ctx.value(node, 0)], alpha=float(node.attr("alpha", 0.01)))


def _gelu(ctx: Ctx, node: OnnxNode) -> Value:
    return ctx.emit("gelu", [ctx.value(node, 0)], approximate=node.attr("approximate", "none"))


def _clip(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    if not is_float(x.type.dtype):
        return int_clip(ctx, node, x)
    if ctx.opset < 11:
        lo, hi = node.attr("min"), node.attr("max")
    else:
        bounds = [ctx.static(node, i, "Clip bound") for i in (1, 2)]
        lo, hi = (None if b is None else float(np.ravel(b)[0]) for b in bounds)
    if lo is not None and hi is not None and lo > hi:  # ONNX: every value becomes max
        lo = hi
    return ctx.emit("clamp", [x], min=lo, max=hi)


def _softmax(op: str) -> Callable[[Ctx, OnnxNode], Any]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        default = -1 if ctx.opset >= 13 else 1
        axis = onnx_axis(int(node.attr("axis", default)), x.type.rank)
        if ctx.opset < 13 and axis != x.type.rank - 1:
            raise ConversionError(f"{node.op_type} before opset 13 flattens from axis {axis}; only the last axis "
                                  "is supported")
        return ctx.emit(op, [x], axis=axis)
    return convert


def _where(ctx: Ctx, node: OnnxNode) -> Any:
    values = [ctx.input(node, i) for i in range(3)]
    if all(is_static(v) for v in values):
        return np.where(*values)
    dtype = next(v.type.dtype for v in values[1:] if isinstance(v, Value)) if any(
        isinstance(v, Value) for v in values[1:]) else str(values[1].dtype)
    return ctx.emit("where", [ctx.value(node, 0, "bool"), ctx.value(node, 1, dtype), ctx.value(node, 2, dtype)])


def _cast(ctx: Ctx, node: OnnxNode) -> Any:
    dtype = ir_dtype(int(node.attr("to")))
    x = ctx.input(node, 0)
    if is_static(x):
        return x if x.dtype == object and dtype.startswith("int") else x.astype(dtype)
    if isinstance(x, Lazy):
        return x
    return ctx.as_dtype(ctx.value(node, 0), dtype)


def _cast_like(ctx: Ctx, node: OnnxNode) -> Any:
    like = ctx.input(node, 1)
    dtype = like.type.dtype if isinstance(like, Value) else str(like.dtype) if is_static(like) else None
    x = ctx.input(node, 0)
    if is_static(x) and dtype is not None and x.dtype != object:
        return x.astype(dtype)
    return x if not isinstance(x, Value) or dtype is None else ctx.as_dtype(x, dtype)


def _identity(ctx: Ctx, node: OnnxNode) -> Any:
    return ctx.input(node, 0)


def _dropout(ctx: Ctx, node: OnnxNode) -> Any:
    if len(node.outputs) > 1 and node.outputs[1]:
        return [ctx.input(node, 0), Lazy("a dropout mask (training only)")]
    return ctx.input(node, 0)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"),
    "Pow": _binary("pow"),
    "Equal": _binary("eq"), "Less": _binary("lt"), "Greater": _binary("gt"), "LessOrEqual": _binary("le"),
    "GreaterOrEqual": _binary("ge"), "Not": _not,
    "Relu": _unary("relu"), "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"), "Erf": _unary("erf"),
    "Exp": _unary("exp"), "Log": _unary("log"), "Neg": _unary("neg"), "Sqrt": _unary("sqrt"), "Abs": _unary("abs"),
    "Reciprocal": _unary("reciprocal"), "LeakyRelu": _leaky_relu, "Gelu": _gelu, "Clip": _clip,
    "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "Where": _where, "Cast": _cast, "CastLike": _cast_like, "Identity": _identity, "Dropout": _dropout,
}

__all__ = ["CONVERTERS", "is_float"]
