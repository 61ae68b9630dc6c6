"""The Reduce* ops: Sum, Mean, Max, Min, Prod and the composites L1, L2, SumSquare, LogSum, LogSumExp.

Axes come from the attribute (before opset 18; 13 for ReduceSum) or the second input; no axes reduces
over all of them unless noop_with_empty_axes. On import-time arrays (shape arithmetic) they are folded.
Over an empty axis the result does not depend on the data (0 for a sum, 1 for a product, -inf/inf for
max/min, as ONNX's reference): it is that constant.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir.types import numel
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, is_static, onnx_axis

EMPTY = {"sum": 0.0, "prod": 1.0, "max": -np.inf, "min": np.inf, "l1": 0.0, "l2": 0.0, "sum_square": 0.0,
         "log_sum": -np.inf, "log_sum_exp": -np.inf}


def _axes(ctx: Ctx, node: OnnxNode, rank: int, axes_input_from: int) -> tuple[int, ...] | None:
    """The reduced axes, sorted; None: the node is a no-op (empty axes with noop_with_empty_axes)."""
    if ctx.opset >= axes_input_from:
        axes = ctx.ints(node, 1, f"{node.op_type}'s axes") if len(node.inputs) > 1 and node.inputs[1] else None
    else:
        axes = node.attr("axes")
    if axes is None or len(axes) == 0:
        if node.attr("noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    return tuple(sorted({onnx_axis(int(a), rank) for a in axes}))


def _static_reduce(op: str, x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    if x.dtype == object:
        if op != "prod" or x.ndim != 1:
            raise ConversionError(f"Reduce{op} over symbolic sizes")
        return np.asarray(numel(tuple(x.tolist())), dtype=object)
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}.get(op)
    if fn is None:
        raise ConversionError(f"Reduce {op} of an import-time array")
    return np.asarray(fn(x, axis=axes, keepdims=keep)).astype(x.dtype)


def _composite(ctx: Ctx, op: str, x: Value, axes: tuple[int, ...], keep: bool) -> Value:
    dtype = x.type.dtype
    if op == "l1":
        return ctx.emit("sum", [ctx.emit("abs", [x])], axes=axes, keepdims=keep)
    if op in ("l2", "sum_square"):
        squares = ctx.emit("sum", [ctx.emit("mul", [x, x])], axes=axes, keepdims=keep)
        return squares if op == "sum_square" else ctx.emit("sqrt", [squares])
    if op == "log_sum":
        return ctx.emit("log", [ctx.emit("sum", [x], axes=axes, keepdims=keep)])
    # log-sum-exp, stabilized by the max (an all -inf or +inf slice keeps its max: exp(x - max) is NaN there)
    top = ctx.emit("max", [x], axes=axes, keepdims=True)
    finite = ctx.emit("isfinite", [top])
    shift = ctx.emit("where", [finite, top, ctx.const(0, dtype)])
    total = ctx.emit("sum", [ctx.emit("exp", [ctx.emit("sub", [x, shift])])], axes=axes, keepdims=True)
    out = ctx.emit("add", [ctx.emit("log", [total]), shift])
    if not keep:
        shape = tuple(d for i, d in enumerate(out.type.shape) if i not in axes)
        out = ctx.emit("reshape", [out], shape=shape)
    return out


def _reduce(op: str, axes_input_from: int) -> Callable[[Ctx, OnnxNode], Any]:
    def convert(ctx: Ctx, node: OnnxNode) -> Any:
        x = ctx.input(node, 0)
        keep = bool(node.attr("keepdims", 1))
        rank = x.ndim if is_static(x) else ctx.value(node, 0).type.rank
        axes = _axes(ctx, node, rank, axes_input_from)
        if axes is None:
            return x
        if is_static(x):
            return _static_reduce(op, x, axes, keep)
        xv = ctx.value(node, 0)
        shape = xv.type.shape
        if any(shape[a] == 0 for a in axes):
            return _empty(ctx, op, xv, axes, keep)
        if xv.type.dtype == "bool" and op in ("max", "min"):
            return ctx.emit("any" if op == "max" else "all", [xv], axes=axes, keepdims=keep)
        if op in ("sum", "mean", "max", "min", "prod"):
            return ctx.emit(op, [xv], axes=axes, keepdims=keep)
        return _composite(ctx, op, xv, axes, keep)
    return convert


def _empty(ctx: Ctx, op: str, x: Value, axes: tuple[int, ...], keep: bool) -> Any:
    shape = [1 if i in axes else d for i, d in enumerate(x.type.shape) if keep or i not in axes]
    if not all(isinstance(d, int) for d in shape):
        raise ConversionError("a reduction over an empty axis with symbolic dims")
    if op == "mean":
        raise ConversionError("ReduceMean over an empty axis")
    value = EMPTY[op]
    if x.type.dtype == "bool":
        value = op == "min"
    elif not x.type.dtype.startswith(("float", "bfloat")):
        info = np.iinfo(x.type.dtype)
        value = {np.inf: info.max, -np.inf: info.min}.get(value, value)
    return np.full(shape, value, dtype=x.type.dtype)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "ReduceSum": _reduce("sum", 13), "ReduceMean": _reduce("mean", 18), "ReduceMax": _reduce("max", 18),
    "ReduceMin": _reduce("min", 18), "ReduceProd": _reduce("prod", 18), "ReduceL1": _reduce("l1", 18),
    "ReduceL2": _reduce("l2", 18), "ReduceSumSquare": _reduce("sum_square", 18),
    "ReduceLogSum": _reduce("log_sum", 18), "ReduceLogSumExp": _reduce("log_sum_exp", 18),
}

__all__ = ["CONVERTERS"]
