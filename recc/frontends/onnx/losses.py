"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss as IR arithmetic.

The target's class is selected with a one-hot mask over the class axis (exact: the sum adds zeros):
loss[n, d..] = -input[n, target[n, d..], d..] * weight[target[n, d..]], 0 where target == ignore_index;
reduction "mean" divides the sum by the sum of the weights used (ONNX's definition).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir.types import is_float, is_int
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode
from recc.frontends.onnx.shapes import reshape


def _class_view(ctx: Ctx, v: Value, rank: int) -> Value:
    """A [C] vector (or arange) shaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return reshape(ctx, v, [1, v.type.shape[0]] + [1] * (rank - 2), allow_zero=True)


def nll(ctx: Ctx, node: OnnxNode, x: Value, target: Value, weight: Value | None) -> Value:
    if not is_float(x.type.dtype) or not is_int(target.type.dtype) or x.type.rank < 2:
        raise ConversionError(f"{node.op_type} of {x.type} with target {target.type}")
    reduction = node.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        raise ConversionError(f"reduction {reduction!r}")
    classes = x.type.shape[1]
    if not isinstance(classes, int) or target.type.rank != x.type.rank - 1:
        raise ConversionError(f"{node.op_type} of {x.type} with target {target.type}")
    target = ctx.as_dtype(target, "int64")
    rank, dtype = x.type.rank, x.type.dtype
    expanded = reshape(ctx, target, [target.type.shape[0], 1] + list(target.type.shape[1:]), allow_zero=True)
    hot = ctx.emit("eq", [expanded, _class_view(ctx, ctx.const(np.arange(classes), "int64"), rank)])
    zero = ctx.const(0, dtype)
    picked = ctx.emit("sum", [ctx.emit("where", [hot, x, zero])], axes=(1,), keepdims=False)
    if weight is not None:
        w = ctx.emit("sum", [ctx.emit("where", [hot, _class_view(ctx, ctx.as_dtype(weight, dtype), rank), zero])],
                     axes=(1,), keepdims=False)
    else:
        w = ctx.emit("expand", [ctx.const(np.ones((1,) * target.type.rank), dtype)], shape=target.type.shape)
    ignore = node.attr("ignore_index")
    if ignore is not None:
        w = ctx.emit("where", [ctx.emit("ne", [target, ctx.const(int(ignore), "int64")]), w, zero])
    loss = ctx.emit("neg", [ctx.emit("mul", [picked, w])])
    if reduction == "none":
        return loss
    axes = tuple(range(loss.type.rank))
    total = ctx.emit("sum", [loss], axes=axes, keepdims=False)
    if reduction == "sum":
        return total
    return ctx.emit("div", [total, ctx.emit("sum", [w], axes=axes, keepdims=False)])


def _optional(ctx: Ctx, node: OnnxNode, i: int) -> Value | None:
    return ctx.value(node, i) if ctx.input(node, i) is not None else None


def _nll_loss(ctx: Ctx, node: OnnxNode) -> Value:
    return nll(ctx, node, ctx.value(node, 0), ctx.value(node, 1), _optional(ctx, node, 2))


def _softmax_cross_entropy(ctx: Ctx, node: OnnxNode) -> list[Value]:
    scores = ctx.value(node, 0)
    if scores.type.rank < 2:
        raise ConversionError(f"SoftmaxCrossEntropyLoss of {scores.type}")
    log_prob = ctx.emit("log_softmax", [scores], axis=1)
    return [nll(ctx, node, log_prob, ctx.value(node, 1), _optional(ctx, node, 2)), log_prob]


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "NegativeLogLikelihoodLoss": _nll_loss, "SoftmaxCrossEntropyLoss": _softmax_cross_entropy,
}

__all__ = ["CONVERTERS", "nll"]
