"""Functionalized writes into views: `x[:, 0] = v` and `x[2:5] = y` arrive from Core ATen decomposition as
select_scatter / slice_scatter, which become a concat of the untouched pieces around the new one."""

from __future__ import annotations

from typing import Any

import torch

from recc.compiler.ir import Value
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts


def _bounds(size: Any, start: Any, end: Any) -> tuple[int, Any]:
    """[start, end) as non-negative ints, end None meaning 'to the end' (also for a symbolic size)."""
    start = 0 if start is None else start
    if end is not None and not isinstance(end, int):
        end = None if end == size else end
    if not isinstance(start, int) or (end is not None and not isinstance(end, int)):
        raise ConversionError("scatter bounds must be static")
    if isinstance(size, int):
        start = max(0, start + size if start < 0 else start)
        end = size if end is None or end >= size else (end + size if end < 0 else end)
        return min(start, size), (None if end >= size else end)
    if start < 0 or (end is not None and end < 0):
        raise ConversionError("negative scatter bounds along a symbolic dim")
    return start, (None if end is not None and end >= (1 << 62) else end)


def _scatter(ctx: Ctx, xv: Value, src: Value, axis: int, start: int, end: Any) -> Value:
    pieces = []
    if start > 0:
        pieces.append(ctx.emit("slice", [xv], axis=axis, start=0, end=start, step=1))
    pieces.append(ctx.as_dtype(src, xv.type.dtype))
    if end is not None:
        pieces.append(ctx.emit("slice", [xv], axis=axis, start=end, end=None, step=1))
    return pieces[0] if len(pieces) == 1 else ctx.emit("concat", pieces, axis=axis)


@converts("slice_scatter.default")
def _slice_scatter(ctx: Ctx, node: torch.fx.Node, x: Any, src: Any, dim: int = 0, start: Any = None,
                   end: Any = None, step: int = 1) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    if step != 1:
        raise ConversionError(f"slice_scatter with step {step} (only step 1 is supported)")
    start, end = _bounds(xv.type.shape[axis], ctx.arg(start), ctx.arg(end))
    return _scatter(ctx, xv, ctx.value(src), axis, start, end)


@converts("select_scatter.default")
def _select_scatter(ctx: Ctx, node: torch.fx.Node, x: Any, src: Any, dim: int, index: int) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    size = xv.type.shape[axis]
    if not isinstance(index, int) or (index < 0 and not isinstance(size, int)):
        raise ConversionError("select_scatter needs a static index")
    index = index + size if index < 0 else index
    shape = xv.type.shape[:axis] + (1,) + xv.type.shape[axis + 1:]
    row = ctx.emit("reshape", [ctx.value(src)], shape=shape)
    return _scatter(ctx, xv, row, axis, index, None if size == index + 1 else index + 1)
