"""Normalizations, written as IR reductions and arithmetic: LayerNormalization (with its Mean and
InvStdDev outputs), BatchNormalization in inference mode, InstanceNormalization, GroupNormalization
(opset 18's per-group and opset 21's per-channel scale and bias)."""

from __future__ import annotations

from typing import Any, Callable

from recc.compiler.ir import Value
from recc.compiler.ir.types import is_float
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, ir_dtype, onnx_axis
from recc.frontends.onnx.shapes import reshape


def moments(ctx: Ctx, x: Value, axes: tuple[int, ...], eps: float) -> tuple[Value, Value, Value]:
    """(mean, x - mean, 1 / sqrt(var + eps)) over `axes`, kept as size-1 dims."""
    mean = ctx.emit("mean", [x], axes=axes, keepdims=True)
    centered = ctx.emit("sub", [x, mean])
    var = ctx.emit("mean", [ctx.emit("mul", [centered, centered])], axes=axes, keepdims=True)
    inv_std = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(eps, x.type.dtype)])])
    return mean, centered, inv_std


def _float_input(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    if not is_float(x.type.dtype):
        raise ConversionError(f"{node.op_type} of {x.type.dtype}")
    return x


def _stash(ctx: Ctx, node: OnnxNode, x: Value) -> Value:
    """The input in the type the statistics are computed in (stash_type, float32 by default)."""
    stash = ir_dtype(int(node.attr("stash_type", 1)))
    return ctx.as_dtype(x, stash)


def _layer_norm(ctx: Ctx, node: OnnxNode) -> list[Any]:
    x = _float_input(ctx, node)
    rank = x.type.rank
    axis = onnx_axis(int(node.attr("axis", -1)), rank)
    axes = tuple(range(axis, rank))
    xs = _stash(ctx, node, x)
    mean, centered, inv_std = moments(ctx, xs, axes, float(node.attr("epsilon", 1e-5)))
    y = ctx.as_dtype(ctx.emit("mul", [centered, inv_std]), x.type.dtype)
    y = ctx.emit("mul", [y, ctx.value(node, 1, x.type.dtype)])
    if ctx.input(node, 2) is not None:
        y = ctx.emit("add", [y, ctx.value(node, 2, x.type.dtype)])
    return [y, mean, inv_std]


def _per_channel(ctx: Ctx, node: OnnxNode, i: int, x: Value) -> Value:
    """Input i, a [C] vector, shaped to broadcast along axis 1 of x."""
    v = ctx.value(node, i, x.type.dtype)
    if v.type.rank != 1:
        raise ConversionError(f"{node.op_type}'s input {i} must be 1-D, got {v.type}")
    return reshape(ctx, v, [v.type.shape[0]] + [1] * (x.type.rank - 2), allow_zero=True) if x.type.rank > 2 else v


def _batch_norm(ctx: Ctx, node: OnnxNode) -> Value:
    x = _float_input(ctx, node)
    if int(node.attr("training_mode", 0)) or sum(1 for o in node.outputs[1:] if o):
        raise ConversionError("BatchNormalization in training mode (running statistics as outputs)")
    if ctx.opset < 7 and not int(node.attr("is_test", 0)) and node.attr("is_test") is not None:
        raise ConversionError("BatchNormalization with is_test=0")
    if x.type.rank < 2:
        raise ConversionError(f"BatchNormalization of a rank-{x.type.rank} input")
    scale, bias, mean, var = (_per_channel(ctx, node, i, x) for i in (1, 2, 3, 4))
    eps = float(node.attr("epsilon", 1e-5))
    inv_std = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(eps, x.type.dtype)])])
    y = ctx.emit("mul", [ctx.emit("sub", [x, mean]), ctx.emit("mul", [inv_std, scale])])
    return ctx.emit("add", [y, bias])


def _instance_norm(ctx: Ctx, node: OnnxNode) -> Value:
    x = _float_input(ctx, node)
    if x.type.rank < 3:
        raise ConversionError(f"InstanceNormalization of a rank-{x.type.rank} input")
    _, centered, inv_std = moments(ctx, x, tuple(range(2, x.type.rank)), float(node.attr("epsilon", 1e-5)))
    y = ctx.emit("mul", [ctx.emit("mul", [centered, inv_std]), _per_channel(ctx, node, 1, x)])
    return ctx.emit("add", [y, _per_channel(ctx, node, 2, x)])


def _group_norm(ctx: Ctx, node: OnnxNode) -> Value:
    x = _float_input(ctx, node)
    shape = list(x.type.shape)
    groups = int(node.attr("num_groups"))
    if x.type.rank < 3 or not isinstance(shape[1], int) or shape[1] % groups:
        raise ConversionError(f"GroupNormalization of {x.type} in {groups} groups")
    grouped = reshape(ctx, _stash(ctx, node, x) if ctx.opset >= 21 else x,
                      [shape[0], groups, shape[1] // groups] + shape[2:], allow_zero=True)
    _, centered, inv_std = moments(ctx, grouped, tuple(range(2, grouped.type.rank)),
                                   float(node.attr("epsilon", 1e-5)))
    normalized = ctx.as_dtype(ctx.emit("mul", [centered, inv_std]), x.type.dtype)
    if ctx.opset >= 21:  # scale and bias per channel
        y = reshape(ctx, normalized, shape, allow_zero=True)
        return ctx.emit("add", [ctx.emit("mul", [y, _per_channel(ctx, node, 1, x)]), _per_channel(ctx, node, 2, x)])
    per_group = [_per_channel(ctx, node, i, grouped) for i in (1, 2)]  # opset 18: [num_groups]
    y = ctx.emit("add", [ctx.emit("mul", [normalized, per_group[0]]), per_group[1]])
    return reshape(ctx, y, shape, allow_zero=True)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "LayerNormalization": _layer_norm, "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm, "GroupNormalization": _group_norm,
}

__all__ = ["CONVERTERS", "moments"]
