"""Storage-level views and writes: as_strided (a constant-index gather over the flat input) and
masked_scatter (a running count of the mask picks each written element of the source)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts


def _static(shape: tuple, what: str) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in shape):
        raise ConversionError(f"{what} over symbolic dims {shape}")
    return tuple(shape)


@converts("as_strided.default", "as_strided_copy.default")
def _as_strided(ctx: Ctx, node: torch.fx.Node, x: Any, size: Any, stride: Any, storage_offset: Any = None) -> Value:
    """Reads x's storage, so it is compiled only where that storage is x itself laid out contiguously (graph
    inputs and fresh results are); the positions are computed at compile time and must lie inside x."""
    xv = ctx.value(x)
    shape = _static(xv.type.shape, "as_strided")
    meta = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    if meta is None or not meta.is_contiguous() or meta.storage_offset() != 0:
        raise ConversionError("as_strided of a tensor that is not contiguous from the start of its storage")
    size, stride = [int(s) for s in size], [int(s) for s in stride]
    offset = int(storage_offset or 0)
    flat = np.full(size, offset, dtype=np.int64)
    for axis, (n, st) in enumerate(zip(size, stride)):
        flat = flat + (np.arange(n, dtype=np.int64) * st).reshape([n if a == axis else 1 for a in range(len(size))])
    numel = int(np.prod(shape))
    if flat.size and (flat.min() < 0 or flat.max() >= numel):
        raise ConversionError(f"as_strided reads storage outside the input's {numel} elements")
    source = ctx.emit("reshape", [xv], shape=(numel,))
    return ctx.emit("take", [source, ctx.graph.add_param("strided_index", flat)], axis=0, wrap=False)


def _running_positions(ctx: Ctx, mask: Value, numel: int) -> tuple[Value, Value]:
    """(running count of the set positions of the flattened mask, that count - 1 clipped at 0): the element
    of the source each set position takes, in row-major order."""
    counts = ctx.emit("cumsum", [ctx.emit("reshape", [ctx.as_dtype(mask, "int64")], shape=(numel,))], axis=0)
    return counts, ctx.emit("maximum", [ctx.emit("sub", [counts, ctx.const(1, "int64")]), ctx.const(0, "int64")])


@converts("masked_scatter.default")
def _masked_scatter(ctx: Ctx, node: torch.fx.Node, x: Any, mask: Any, source: Any) -> Value:
    """out = x where not mask, else the next element of source (row-major): position = running count - 1.
    A mask with more True than source has elements is refused at run time by the take's range check."""
    xv, mv, sv = ctx.value(x), ctx.value(mask), ctx.value(source)
    shape = _static(xv.type.shape, "masked_scatter")
    numel = int(np.prod(shape))
    if mv.type.rank < len(shape):
        mv = ctx.emit("reshape", [mv], shape=(1,) * (len(shape) - mv.type.rank) + mv.type.shape)
    mask_full = ctx.emit("expand", [mv], shape=shape)
    _, position = _running_positions(ctx, mask_full, numel)
    src_numel = int(np.prod(_static(sv.type.shape, "masked_scatter")))
    if src_numel == 0:
        raise ConversionError("masked_scatter from an empty source")
    picked = ctx.emit("take", [ctx.emit("reshape", [sv], shape=(src_numel,)), position], axis=0, wrap=False)
    picked = ctx.emit("reshape", [ctx.as_dtype(picked, xv.type.dtype)], shape=shape)
    return ctx.emit("where", [mask_full, picked, xv])


def _must_equal(ctx: Ctx, total: Value, expected: int, position: Value) -> Value:
    """position, unchanged, after a run-time check that total == expected (a lookup in a one-element table
    at total - expected: any other count is refused with the lookup's out-of-range error)."""
    zero = ctx.graph.add_param("count_check", np.zeros(1, np.int64))
    offset = ctx.emit("sub", [total, ctx.const(expected, "int64")])
    checked = ctx.emit("take", [zero, ctx.emit("reshape", [offset], shape=(1,))], axis=0, wrap=False)
    return ctx.emit("add", [position, checked])


def index_put_mask(ctx: Ctx, xv: Value, p: int, mask: Value, values: Value, accumulate: bool) -> Value:
    """x[:, ..., mask] = v (mask over axes p..p+k-1): v broadcast to [*pre, count, *post]; a count axis of
    1 is written everywhere the mask is set, else row `running count - 1` of v, with count == v's rows
    checked at run time as torch does."""
    shape = _static(xv.type.shape, "index_put with a boolean mask")
    k = mask.type.rank
    pre, post = shape[:p], shape[p + k:]
    if tuple(mask.type.shape) != shape[p:p + k]:
        raise ConversionError(f"boolean mask {mask.type.shape} does not match the indexed dims {shape[p:p + k]}")
    full_mask = ctx.emit("expand", [ctx.emit("reshape", [mask], shape=(1,) * p + shape[p:p + k] + (1,) * len(post))],
                         shape=shape)
    rank = len(pre) + 1 + len(post)
    if values.type.rank > rank:
        raise ConversionError(f"values {values.type.shape} have more dims than x[mask] ({rank})")
    vals = ctx.emit("reshape", [values], shape=(1,) * (rank - values.type.rank) + values.type.shape)
    rows = vals.type.shape[p]
    if rows == 1:
        picked = ctx.emit("reshape", [vals], shape=vals.type.shape[:p] + (1,) * k + vals.type.shape[p + 1:])
    else:
        numel = int(np.prod(shape[p:p + k]))
        counts, position = _running_positions(ctx, mask, numel)
        total = ctx.emit("slice", [counts], axis=0, start=numel - 1, end=numel, step=1)
        position = _must_equal(ctx, total, int(rows), position)
        picked = ctx.emit("take", [vals, position], axis=p, wrap=False)
        picked = ctx.emit("reshape", [picked], shape=vals.type.shape[:p] + shape[p:p + k] + vals.type.shape[p + 1:])
    picked = ctx.emit("expand", [ctx.as_dtype(picked, xv.type.dtype)], shape=shape)
    if accumulate:
        picked = ctx.emit("add", [xv, picked])
    return ctx.emit("where", [full_mask, picked, xv])
