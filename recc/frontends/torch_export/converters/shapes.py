"""Views and data movement: reshape, permute, expand, cat, slicing, indexing, splits and chunks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.compiler.ir.types import Dim, dim_mul, numel
from recc.frontends.torch_export.converters.context import (
    ConversionError,
    Ctx,
    converts,
)


@converts("reshape.default", "view.default", "_unsafe_view.default", "flatten.using_ints",
          "squeeze.dim", "squeeze.dims", "squeeze.default", "unsqueeze.default", "unflatten.int")
def _reshape(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any) -> Value:
    xv = ctx.value(x)
    shape = list(ctx.out_shape(node))
    if shape == list(xv.type.shape):
        return xv
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(symbolic) == 1 and not isinstance(xv.type.shape[0], int) and symbolic[0] != 0:
        shape[symbolic[0]] = -1
    return ctx.emit("reshape", [xv], shape=tuple(shape))


@converts("permute.default")
def _permute(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any) -> Value:
    xv = ctx.value(x)
    return ctx.emit("permute", [xv], perm=tuple(d % xv.type.rank for d in dims))


@converts("t.default", "numpy_T.default")
def _t(ctx: Ctx, node: torch.fx.Node, x: Any) -> Value:
    xv = ctx.value(x)
    return xv if xv.type.rank < 2 else ctx.emit("permute", [xv], perm=(1, 0))


@converts("transpose.int")
def _transpose(ctx: Ctx, node: torch.fx.Node, x: Any, d0: int, d1: int) -> Value:
    xv = ctx.value(x)
    perm = list(range(xv.type.rank))
    perm[d0 % xv.type.rank], perm[d1 % xv.type.rank] = perm[d1 % xv.type.rank], perm[d0 % xv.type.rank]
    return ctx.emit("permute", [xv], perm=tuple(perm))


@converts("expand.default")
def _expand(ctx: Ctx, node: torch.fx.Node, x: Any, sizes: Any, *rest: Any) -> Value:
    xv = ctx.value(x)
    shape = ctx.out_shape(node)
    if len(shape) > xv.type.rank:
        xv = ctx.emit("reshape", [xv], shape=(1,) * (len(shape) - xv.type.rank) + xv.type.shape)
    return xv if xv.type.shape == shape else ctx.emit("expand", [xv], shape=shape)


@converts("cat.default", "concat.default")
def _cat(ctx: Ctx, node: torch.fx.Node, tensors: Any, dim: int = 0) -> Value:
    values = [ctx.value(t) for t in tensors]
    values = [v for v in values if 0 not in v.type.shape] or values[:1]
    return values[0] if len(values) == 1 else ctx.emit("concat", values, axis=dim % values[0].type.rank)


@converts("stack.default")
def _stack(ctx: Ctx, node: torch.fx.Node, tensors: Any, dim: int = 0) -> Value:
    values = [ctx.value(t) for t in tensors]
    axis = dim % (values[0].type.rank + 1)
    expanded = [ctx.emit("reshape", [v], shape=v.type.shape[:axis] + (1,) + v.type.shape[axis:]) for v in values]
    return expanded[0] if len(expanded) == 1 else ctx.emit("concat", expanded, axis=axis)


@converts("slice.Tensor")
def _slice(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    size = xv.type.shape[axis]
    start = 0 if start is None else ctx.arg(start)
    end = ctx.arg(end)
    if end is None or (isinstance(end, int) and isinstance(size, int) and end >= size) or \
            (isinstance(end, int) and end >= (1 << 62)) or end == size:
        end = None
    if start == 0 and end is None and step == 1:
        return xv
    if not isinstance(start, int) or (end is not None and not isinstance(end, int)):
        raise ConversionError("slice bounds must be static")
    return ctx.emit("slice", [xv], axis=axis, start=start, end=end, step=step)


@converts("select.int")
def _select(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: int) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    if not isinstance(index, int):
        raise ConversionError("select with a symbolic index")
    size = xv.type.shape[axis]
    index = index % size if isinstance(size, int) else index
    sliced = ctx.emit("slice", [xv], axis=axis, start=index, end=index + 1, step=1)
    return ctx.emit("reshape", [sliced], shape=xv.type.shape[:axis] + xv.type.shape[axis + 1:])


@converts("index_select.default")
def _index_select(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: Any) -> Value:
    xv = ctx.value(x)  # torch refuses negative indices here (unlike x[index])
    if xv.type.rank == 0:  # a 0-d tensor indexes as one element
        one = ctx.emit("take", [ctx.emit("reshape", [xv], shape=(1,)), ctx.value(index)], axis=0, wrap=False)
        return ctx.emit("reshape", [one], shape=ctx.out_shape(node))
    return ctx.emit("take", [xv, ctx.value(index)], axis=dim % xv.type.rank, wrap=False)


@converts("take.default")
def _take(ctx: Ctx, node: torch.fx.Node, x: Any, index: Any) -> Value:
    """torch.take reads x as if flattened; -numel <= index < numel, a negative index wraps once."""
    xv = ctx.value(x)
    size = numel(xv.type.shape)
    if not isinstance(size, int):  # its range check would need a bound that depends on the batch
        raise ConversionError(f"torch.take on a tensor whose size depends on the batch ({size} elements)")
    flat = xv if xv.type.rank == 1 else ctx.emit("reshape", [xv], shape=(size,))
    return ctx.emit("take", [flat, ctx.value(index)], axis=0, wrap=True)


@converts("gather.default")
def _gather(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: Any, sparse_grad: bool = False) -> Value:
    xv = ctx.value(x)  # torch refuses negative indices here
    return ctx.emit("gather", [xv, ctx.value(index)], axis=dim % xv.type.rank)


@converts("index.Tensor")
def _index(ctx: Ctx, node: torch.fx.Node, x: Any, indices: Any) -> Value:
    """x[:, i, j, ...] with index tensors on consecutive axes -> reshape + one take.

    The index tensors broadcast together (numpy advanced indexing); when they are parameters (constants)
    we fold them into one flat index over the merged axes, so `Z[:, li, lj]` becomes
    take(reshape(Z, [B, n*n]), li*n + lj) — a single gather with the right [B, len(li)] shape.
    """
    xv = ctx.value(x)
    axes = [i for i, ix in enumerate(indices) if ix is not None]
    if not axes:
        return xv
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise ConversionError("advanced indexing on non-consecutive axes")
    index_values = [ctx.value(indices[a]) for a in axes]
    if len(axes) == 1:  # x[ids] reads x[ids + n] for a negative id, as Python indexing does
        return ctx.emit("take", [xv, index_values[0]], axis=axes[0], wrap=True)
    arrays = [ctx.graph.param_array(v) for v in index_values]
    dims = [xv.type.shape[a] for a in axes]
    if not all(isinstance(d, int) for d in dims):
        raise ConversionError("multi-axis indexing over symbolic dims")
    if any(a is None for a in arrays):  # computed or input indices: one flat index, each part range-checked
        from recc.frontends.torch_export.converters.scatter_index import flat_index

        flat = flat_index(ctx, index_values, dims)  # type: ignore[arg-type]
        merged_shape = xv.type.shape[:axes[0]] + (int(np.prod(dims)),) + xv.type.shape[axes[-1] + 1:]
        return ctx.emit("take", [ctx.emit("reshape", [xv], shape=merged_shape), flat], axis=axes[0])
    flat = np.zeros(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=np.int64)
    for array, d in zip(arrays, dims):
        flat = flat * d + np.where(array < 0, array + d, array)
    merged: Dim = int(np.prod(dims))
    shape = xv.type.shape[:axes[0]] + (merged,) + xv.type.shape[axes[-1] + 1:]
    reshaped = ctx.emit("reshape", [xv], shape=shape)
    return ctx.emit("take", [reshaped, ctx.graph.add_param("flat_index", flat)], axis=axes[0])



def _pieces(ctx: Ctx, xv: Value, axis: int, sizes: list[int]) -> tuple[Value, ...]:
    out, start = [], 0
    for size in sizes:
        out.append(ctx.emit("slice", [xv], axis=axis, start=start, end=start + size, step=1))
        start += size
    return tuple(out)


def _static_dim(xv: Value, axis: int) -> int:
    size = xv.type.shape[axis]
    if not isinstance(size, int):
        raise ConversionError("splitting a symbolic dim is not supported")
    return size


@converts("split_with_sizes.default")
def _split_with_sizes(ctx: Ctx, node: torch.fx.Node, x: Any, sizes: Any, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    return _pieces(ctx, xv, dim % xv.type.rank, [int(s) for s in sizes])


@converts("split.Tensor")
def _split(ctx: Ctx, node: torch.fx.Node, x: Any, size: int, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    total = _static_dim(xv, axis)
    return _pieces(ctx, xv, axis, [min(size, total - s) for s in range(0, total, size)])


@converts("chunk.default")
def _chunk(ctx: Ctx, node: torch.fx.Node, x: Any, chunks: int, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    total = _static_dim(xv, axis)
    size = -(-total // chunks)
    return _pieces(ctx, xv, axis, [min(size, total - s) for s in range(0, total, size)])


@converts("unbind.int")
def _unbind(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    rest = xv.type.shape[:axis] + xv.type.shape[axis + 1:]
    return tuple(ctx.emit("reshape", [piece], shape=rest) for piece in _pieces(ctx, xv, axis, [1] * _static_dim(xv, axis)))


@converts("expand_as.default")
def _expand_as(ctx: Ctx, node: torch.fx.Node, x: Any, other: Any) -> Value:
    return _expand(ctx, node, x, None)


@converts("new_zeros.default", "new_ones.default", "new_full.default", "zeros_like.default", "ones_like.default",
          "full_like.default")
def _new_filled(ctx: Ctx, node: torch.fx.Node, x: Any, *args: Any, **kw: Any) -> Value:
    """A constant-filled tensor whose shape may hold the batch: a one-element constant broadcast to it."""
    name = node.target._schema.name.split("::")[-1]
    fill = 1 if "ones" in name else args[1] if name == "new_full" else args[0] if name == "full_like" else 0
    shape = ctx.out_shape(node)
    scalar = ctx.const(np.full((1,) * len(shape), fill), ctx.out_dtype(node))
    return ctx.emit("expand", [scalar], shape=shape) if any(d != 1 for d in shape) else scalar


@converts("repeat.default")
def _repeat(ctx: Ctx, node: torch.fx.Node, x: Any, repeats: Any) -> Value:
    """x.repeat(r0, r1, ...): x viewed as [1, d0, 1, d1, ...], expanded to [r0, d0, r1, d1, ...], merged."""
    xv = ctx.value(x)
    repeats = list(ctx.arg(repeats))  # ints, or symbolic dims (x.repeat(1, batch, 1))
    shape = (1,) * (len(repeats) - xv.type.rank) + tuple(xv.type.shape)
    interleaved = tuple(d for pair in ((1, d) for d in shape) for d in pair)
    expanded = tuple(d for r, n in zip(repeats, shape) for d in (r, n))
    out = ctx.emit("expand", [ctx.emit("reshape", [xv], shape=interleaved)], shape=expanded)
    return ctx.emit("reshape", [out], shape=tuple(dim_mul(r, n) for r, n in zip(repeats, shape)))


@converts("diagonal.default")
def _diagonal(ctx: Ctx, node: torch.fx.Node, x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Value:
    """The two axes moved last and merged, then one take of the diagonal's flat positions."""
    xv = ctx.value(x)
    rank = xv.type.rank
    a, b = dim1 % rank, dim2 % rank
    n, m = xv.type.shape[a], xv.type.shape[b]
    if not isinstance(n, int) or not isinstance(m, int):
        raise ConversionError("diagonal of symbolic dims")
    rest = [i for i in range(rank) if i not in (a, b)]
    moved = ctx.emit("permute", [xv], perm=(*rest, a, b))
    flat = ctx.emit("reshape", [moved], shape=tuple(xv.type.shape[i] for i in rest) + (n * m,))
    rows = np.arange(max(0, -offset), min(n, m - offset)) if -n < offset < m else np.arange(0)
    index = ctx.graph.add_param("diagonal_index", (rows * m + rows + offset).astype(np.int64))
    return ctx.emit("take", [flat, index], axis=len(rest))
