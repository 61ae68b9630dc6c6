"""TopK as the IR's stable `sort` / `argsort` and a slice of their first K: equal values in index order, as
ONNX specifies; NaN above every number. K must be known at import time (an initializer, a Constant, or an
input the backend specializes on); sorted=0 leaves the order unspecified, and recc's is sorted."""

from __future__ import annotations

from typing import Any, Callable

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, onnx_axis


def _topk(ctx: Ctx, node: OnnxNode) -> tuple[Value, Value]:
    x = ctx.value(node, 0)
    if x.type.rank == 0:
        raise ConversionError("TopK of a 0-d tensor")
    if ctx.opset < 10:
        k = node.attr("k")
    else:
        ks = ctx.ints(node, 1, "TopK's K")
        if not ks or len(ks) != 1:
            raise ConversionError(f"TopK's K must hold one value, got {ks}")
        k = ks[0]
    axis = onnx_axis(int(node.attr("axis", -1)), x.type.rank)
    n = x.type.shape[axis]
    if not isinstance(n, int) or not isinstance(k, int):
        raise ConversionError(f"TopK of {k} along a symbolic dim ({n}): the sorted axis must be static")
    if not 0 < k <= n:
        raise ConversionError(f"TopK's K = {k} outside 1..{n} (the axis' size)")
    descending = bool(node.attr("largest", 1))
    values = ctx.emit("sort", [x], axis=axis, descending=descending)
    indices = ctx.emit("argsort", [x], axis=axis, descending=descending)
    if k == n:
        return values, indices
    return (ctx.emit("slice", [values], axis=axis, start=0, end=k, step=1),
            ctx.emit("slice", [indices], axis=axis, start=0, end=k, step=1))


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {"TopK": _topk}

__all__ = ["CONVERTERS"]
