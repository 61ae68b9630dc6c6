"""sort / argsort / topk as the IR's `sort` and `argsort` (stable, NaN above every number) and a slice of
their first k for topk.

Equal elements come out in their order, which is torch's for stable=True; with stable=False torch's CPU
kernel runs std::sort (introsort), whose order of equal elements in rows longer than 16 is libstdc++'s
own, and topk's (std::nth_element / partial_sort) is too, at any length: there recc's positions of equal
values can differ from eager's (the values never do). topk(sorted=False) returns them sorted."""

from __future__ import annotations

from typing import Any

import torch

from recc.compiler.ir import Value
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts


def _sorted(ctx: Ctx, x: Any, dim: int, descending: bool) -> tuple[Value, Value]:
    """(values, positions) along dim (the capture drops whichever the program does not read)."""
    xv = ctx.value(x)
    if xv.type.rank == 0:  # one element: itself, at position 0
        return xv, ctx.const(0, "int64")
    axis = dim % xv.type.rank
    return (ctx.emit("sort", [xv], axis=axis, descending=bool(descending)),
            ctx.emit("argsort", [xv], axis=axis, descending=bool(descending)))


@converts("sort.default", "sort.stable")
def _sort(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = -1, descending: bool = False,
          stable: bool | None = None) -> tuple[Value, Value]:
    return _sorted(ctx, x, dim, descending)


@converts("argsort.default", "argsort.stable")
def _argsort(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = -1, descending: bool = False,
             stable: bool | None = None) -> Value:
    return _sorted(ctx, x, dim, descending)[1]


@converts("topk.default")
def _topk(ctx: Ctx, node: torch.fx.Node, x: Any, k: Any, dim: int = -1, largest: bool = True,
          sorted: bool = True) -> tuple[Value, Value]:
    xv = ctx.value(x)
    if not isinstance(k, int):
        raise ConversionError(f"topk with a k known only at run time ({k})")
    if k <= 0:
        raise ConversionError("topk with k = 0: recc's build does not take zero-size tensors")
    values, indices = _sorted(ctx, x, dim, largest)
    if xv.type.rank == 0:
        return values, indices
    axis = dim % xv.type.rank
    n = xv.type.shape[axis]
    if not isinstance(n, int):
        raise ConversionError(f"topk along a symbolic dim ({n}): recc takes the first k of a static axis only")
    if k == n:
        return values, indices
    return (ctx.emit("slice", [values], axis=axis, start=0, end=k, step=1),
            ctx.emit("slice", [indices], axis=axis, start=0, end=k, step=1))
