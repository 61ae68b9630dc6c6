"""Indexed writes: scatter / scatter_add / scatter_reduce and index_put (`x[ids] = v`, `x[:, i, j] += v`)
as the IR's `scatter` (its indices range-checked like every gather's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.compiler.ir.ops import broadcast_shapes
from recc.compiler.ir.types import dim_mul
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts
from recc.frontends.torch_export.converters.strided import index_put_mask

IDENTITY = {"sum": 0.0, "prod": 1.0, "amax": -np.inf, "amin": np.inf, "mean": 0.0}


def _fit_src(ctx: Ctx, src: Value, index: Value) -> Value:
    """torch lets src be larger than index: its leading part along every axis is used."""
    for axis, (have, want) in enumerate(zip(src.type.shape, index.type.shape)):
        if have != want:
            if not isinstance(have, int) or not isinstance(want, int):
                raise ConversionError("scatter src larger than index along a symbolic dim")
            src = ctx.emit("slice", [src], axis=axis, start=0, end=want, step=1)
    return src


def _filled(ctx: Ctx, value: Any, like: Value, dtype: str) -> Value:
    v = ctx.operand(value, dtype)
    v = v if v.type.rank == like.type.rank else ctx.emit("reshape", [v], shape=(1,) * like.type.rank)
    return ctx.emit("expand", [v], shape=like.type.shape)


@converts("scatter.src", "scatter.value", "scatter_add.default")
def _scatter(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: Any, src: Any, **kw: Any) -> Value:
    xv, iv = ctx.value(x), ctx.value(index)
    if kw.get("reduce") is not None:
        raise ConversionError("scatter with the deprecated reduce= argument (use scatter_reduce)")
    sv = _fit_src(ctx, ctx.value(src), iv) if isinstance(src, torch.fx.Node) else _filled(ctx, src, iv,
                                                                                           xv.type.dtype)
    reduce = "sum" if node.target._schema.name.endswith("scatter_add") else "none"
    return ctx.emit("scatter", [xv, iv, ctx.as_dtype(sv, xv.type.dtype)], axis=dim % max(xv.type.rank, 1),
                    reduce=reduce)


@converts("scatter_reduce.two")
def _scatter_reduce(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: Any, src: Any, reduce: str,
                    include_self: bool = True) -> Value:
    xv, iv = ctx.value(x), ctx.value(index)
    axis = dim % max(xv.type.rank, 1)
    sv = ctx.as_dtype(_fit_src(ctx, ctx.value(src), iv), xv.type.dtype)
    if reduce not in IDENTITY:
        raise ConversionError(f"scatter_reduce {reduce!r}")
    base = xv
    if not include_self:  # the written positions start from the reduction's identity
        identity = IDENTITY[reduce]
        if not xv.type.dtype.startswith("float") and reduce in ("amax", "amin"):
            info = np.iinfo(xv.type.dtype) if xv.type.dtype != "bool" else None
            identity = (info.min if reduce == "amax" else info.max) if info else (reduce == "amin")
        base = ctx.emit("scatter", [xv, iv, _filled(ctx, identity, iv, xv.type.dtype)], axis=axis,
                        reduce="none")
    out = ctx.emit("scatter", [base, iv, sv], axis=axis, reduce="sum" if reduce == "mean" else reduce)
    if reduce != "mean":
        return out
    ones = _filled(ctx, 1.0, iv, xv.type.dtype)
    start = _filled(ctx, 1.0 if include_self else 0.0, xv, xv.type.dtype)
    count = ctx.emit("scatter", [start, iv, ones], axis=axis, reduce="sum")
    count = ctx.emit("maximum", [count, ctx.const(1.0, xv.type.dtype)])
    # integers: torch floors the mean (aten's scatter_reduce divides with rounding_mode="floor")
    return ctx.emit("div" if xv.type.dtype.startswith("float") else "floor_divide", [out, count])


@converts("index_put.default", "index_put_.default", "_unsafe_index_put.default")
def _index_put(ctx: Ctx, node: torch.fx.Node, x: Any, indices: Any, values: Any, accumulate: bool = False) -> Value:
    """x[..., i, j, ...] = v over consecutive indexed axes: those axes merged into one, the (broadcast)
    index tensors into one flat index (negative ids wrap once, as torch), then one scatter along it."""
    xv = ctx.value(x)
    axes = [a for a, ix in enumerate(indices) if ix is not None]
    if not axes or axes != list(range(axes[0], axes[-1] + 1)):
        raise ConversionError("index_put over non-consecutive indexed axes")
    idx = [ctx.value(indices[a]) for a in axes]
    if any(v.type.dtype == "bool" for v in idx):
        if len(idx) != 1:
            raise ConversionError("index_put with a boolean mask next to other indices")
        vals = ctx.value(values) if isinstance(values, torch.fx.Node) else ctx.operand(values, xv.type.dtype)
        return index_put_mask(ctx, xv, axes[0], idx[0], vals, accumulate)
    sizes = [xv.type.shape[a] for a in axes]
    if not all(isinstance(s, int) for s in sizes):
        raise ConversionError("index_put along a symbolic dim")
    shape = idx[0].type.shape
    for v in idx[1:]:
        shape = _broadcast(shape, v.type.shape)
    flat = flat_index(ctx, idx, sizes)
    flat = ctx.emit("expand", [flat], shape=shape) if flat.type.shape != shape else flat
    p, post = axes[0], xv.type.shape[axes[-1] + 1:]
    pre = xv.type.shape[:p]
    count = 1
    for d in shape:
        count = dim_mul(count, d)
    merged = ctx.emit("reshape", [xv], shape=pre + (int(np.prod(sizes)),) + post)
    index = ctx.emit("reshape", [flat], shape=(1,) * len(pre) + (count,) + (1,) * len(post))
    index = ctx.emit("expand", [index], shape=pre + (count,) + post)
    vals = ctx.as_dtype(ctx.value(values) if isinstance(values, torch.fx.Node) else ctx.operand(values, "float32"),
                        xv.type.dtype)
    full = pre + tuple(shape) + post
    if vals.type.rank < len(full):
        vals = ctx.emit("reshape", [vals], shape=(1,) * (len(full) - vals.type.rank) + vals.type.shape)
    vals = ctx.emit("expand", [vals], shape=full) if vals.type.shape != full else vals
    vals = ctx.emit("reshape", [vals], shape=pre + (count,) + post)
    out = ctx.emit("scatter", [merged, index, vals], axis=p, reduce="sum" if accumulate else "none")
    return ctx.emit("reshape", [out], shape=xv.type.shape)


def flat_index(ctx: Ctx, indices: list[Value], sizes: list[int]) -> Value:
    """The flat position of x[i, j, ...] over axes of `sizes`: each index first read through a lookup in
    arange(size) with wrap (a negative id wraps once, as torch; any id out of range is refused at run time
    by that lookup's range check, so a bad j can never alias another row), then i * n_j + j ..."""
    flat: Value | None = None
    for v, size in zip(indices, sizes):
        positions = ctx.graph.add_param("positions", np.arange(size, dtype=np.int64))
        checked = ctx.emit("take", [positions, ctx.as_dtype(v, "int64")], axis=0, wrap=True)
        flat = checked if flat is None else ctx.emit("add", [ctx.emit("mul", [flat, ctx.const(size, "int64")]),
                                                             checked])
    assert flat is not None
    return flat


def _broadcast(a: tuple, b: tuple) -> tuple:
    return broadcast_shapes("index_put", a, b)
