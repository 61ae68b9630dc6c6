"""ScatterElements, Scatter (its deprecated spelling) and ScatterND as the IR's `scatter`, whose indices
are range-checked like every gather's. ONNX indices may be negative (counted from the end): each is read
through a lookup in arange(n) with wrap, so -1 is the last position and anything outside [-n, n) is
refused at run time."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir.types import dim_mul
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, onnx_axis
from recc.frontends.onnx.gathers import checked_positions
from recc.frontends.onnx.shapes import reshape

REDUCE = {"none": "none", "add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _reduction(node: OnnxNode) -> str:
    name = node.attr("reduction", "none")
    if name not in REDUCE:
        raise ConversionError(f"reduction {name!r}")
    return REDUCE[name]


def _scatter_elements(ctx: Ctx, node: OnnxNode) -> Value:
    x, idx, updates = ctx.value(node, 0), ctx.value(node, 1), ctx.value(node, 2)
    axis = onnx_axis(int(node.attr("axis", 0)), x.type.rank)
    if idx.type.shape != updates.type.shape:
        raise ConversionError("indices and updates of different shapes")
    return ctx.emit("scatter", [x, checked_positions(ctx, idx, x.type.shape[axis]), ctx.as_dtype(updates, x.type.dtype)],
                    axis=axis, reduce=_reduction(node))


def _scatter_nd(ctx: Ctx, node: OnnxNode) -> Value:
    """data's first k axes merged into one, the k-tuples into flat positions, one scatter along axis 0."""
    x, idx, updates = ctx.value(node, 0), ctx.value(node, 1), ctx.value(node, 2)
    k = idx.type.shape[-1]
    if not isinstance(k, int) or not 1 <= k <= x.type.rank:
        raise ConversionError("ScatterND needs a static index depth within the data's rank")
    lead, rest = x.type.shape[:k], x.type.shape[k:]
    flat: Value | None = None
    for j, n in enumerate(lead):
        part = ctx.emit("slice", [idx], axis=idx.type.rank - 1, start=j, end=j + 1, step=1)
        part = checked_positions(ctx, reshape(ctx, part, list(idx.type.shape[:-1]), allow_zero=True), n)
        flat = part if flat is None else ctx.emit("add", [ctx.emit("mul", [flat, ctx.const(n, "int64")]), part])
    assert flat is not None
    count: Any = 1
    for d in idx.type.shape[:-1]:
        count = dim_mul(count, d)
    width: Any = 1
    for d in rest:
        width = dim_mul(width, d)
    merged = reshape(ctx, x, [int(np.prod(lead)), width], allow_zero=True)
    index = ctx.emit("expand", [reshape(ctx, flat, [count, 1], allow_zero=True)], shape=(count, width))
    values = reshape(ctx, ctx.as_dtype(updates, x.type.dtype), [count, width], allow_zero=True)
    out = ctx.emit("scatter", [merged, index, values], axis=0, reduce=_reduction(node))
    return reshape(ctx, out, list(x.type.shape), allow_zero=True)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "ScatterElements": _scatter_elements, "Scatter": _scatter_elements, "ScatterND": _scatter_nd,
}
