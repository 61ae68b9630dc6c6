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


@converts("masked_scatter.default")
def _masked_scatter(ctx: Ctx, node: torch.fx.Node, x: Any, mask: Any, source: Any) -> Value:
    """out = x where not mask, else the next element of source (row-major): position = running count - 1.
    A mask with more True than source has elements is refused at run time by the take's range check."""
    xv, mv, sv = ctx.value(x), ctx.value(mask), ctx.value(source)
    shape = _static(xv.type.shape, "masked_scatter")
    numel = int(np.prod(shape))
    mask_full = ctx.emit("expand", [mv if mv.type.rank == len(shape) else
                                    ctx.emit("reshape", [mv], shape=(1,) * (len(shape) - mv.type.rank) + mv.type.shape)],
                         shape=shape)
    counts = ctx.emit("cumsum", [ctx.emit("reshape", [ctx.as_dtype(mask_full, "int64")], shape=(numel,))], axis=0)
    position = ctx.emit("maximum", [ctx.emit("sub", [counts, ctx.const(1, "int64")]), ctx.const(0, "int64")])
    src_numel = int(np.prod(_static(sv.type.shape, "masked_scatter")))
    if src_numel == 0:
        raise ConversionError("masked_scatter from an empty source")
    picked = ctx.emit("take", [ctx.emit("reshape", [sv], shape=(src_numel,)), position], axis=0, wrap=False)
    picked = ctx.emit("reshape", [ctx.as_dtype(picked, xv.type.dtype)], shape=shape)
    return ctx.emit("where", [mask_full, picked, xv])
