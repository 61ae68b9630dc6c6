"""Gather, GatherND and GatherElements.

Gather on a constant 2-D table along axis 0 is an `embedding` lookup. Gathers with constant indices over
several leading axes (DLRM's lower-triangle select, which exporters write as Transpose + GatherND or
Transpose + Flatten + Gather) become one `take` on a flattened view, as the torch frontend writes
`Z[:, li, lj]`; when the gathered axes were moved to the front by a transpose, the take reads the
untransposed tensor and the transpose moves to its (smaller) result.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir.types import Dim, is_float, is_int, numel
from recc.frontends.onnx.context import ConversionError, Ctx, Lazy, OnnxNode, is_static, onnx_axis
from recc.frontends.onnx.shapes import permute, reshape


def _static_indices(ctx: Ctx, node: OnnxNode, i: int) -> np.ndarray | None:
    v = ctx.input(node, i)
    if is_static(v) and v.dtype != object:
        return v.astype(np.int64)
    if isinstance(v, Value) and v.kind == "param":
        return ctx.graph.param_array(v).astype(np.int64)
    return None


def _gather(ctx: Ctx, node: OnnxNode) -> Any:
    data, axis = ctx.input(node, 0), int(node.attr("axis", 0))
    indices = _static_indices(ctx, node, 1)
    if is_static(data) and indices is not None:
        return np.asarray(np.take(data, indices, axis=axis), dtype=data.dtype)
    if isinstance(data, Lazy):
        raise ConversionError(f"gathering from {data.what}")
    if is_static(data) and data.dtype != object and data.ndim == 2 and axis == 0 and is_float(str(data.dtype)):
        ids = ctx.value(node, 1)
        return ctx.emit("embedding", [ctx.as_value(data, name=node.inputs[0]), ids])
    x = ctx.value(node, 0)
    axis = onnx_axis(axis, x.type.rank)
    if indices is None:
        return ctx.emit("take", [x, ctx.value(node, 1)], axis=axis, wrap=True)  # ONNX: -n <= index < n
    size = x.type.shape[axis]
    if isinstance(size, int):
        indices = np.where(indices < 0, indices + size, indices)
    if indices.ndim == 0:
        index = int(indices)
        sliced = ctx.emit("slice", [x], axis=axis, start=index, end=index + 1, step=1)
        return reshape(ctx, sliced, list(x.type.shape[:axis] + x.type.shape[axis + 1:]), allow_zero=True)
    if axis == 0:
        merged = _merged_leading_axes(x)
        if merged is not None:
            return gather_leading(ctx, merged[0], merged[1], indices)
    return ctx.emit("take", [x, ctx.graph.add_param("indices", indices)], axis=axis)


def _merged_leading_axes(x: Value) -> tuple[Value, int] | None:
    """(y, k) when x = reshape(y) merges y's first k axes into one and keeps the rest (Flatten)."""
    producer = x.producer
    if producer is None or producer.op != "reshape":
        return None
    y = producer.inputs[0]
    for k in range(2, y.type.rank + 1):
        if numel(y.type.shape[:k]) == x.type.shape[0] and y.type.shape[k:] == x.type.shape[1:]:
            return y, k
    return None


def gather_leading(ctx: Ctx, data: Value, k: int, flat_index: np.ndarray) -> Value:
    """data[unravel(flat_index)] over data's first k axes (the index flattened row-major): [m, rest...]."""
    producer = data.producer
    if producer is not None and producer.op == "permute":
        perm = tuple(producer.attrs["perm"])
        source = producer.inputs[0]
        first = perm[0]
        if perm[:k] == tuple(range(first, first + k)):
            merged = source.type.shape[:first] + (numel(source.type.shape[first:first + k]),) + \
                source.type.shape[first + k:]
            taken = _take_merged(ctx, source, merged, first, flat_index)
            # taken's axes, in source terms: source axes before `first`, the index, source axes after the k
            order = [a for a in range(source.type.rank) if a < first] + ["m"] + \
                [a for a in range(source.type.rank) if a >= first + k]
            wanted = ["m"] + list(perm[k:])
            return permute(ctx, taken, tuple(order.index(w) for w in wanted))
    merged = (numel(data.type.shape[:k]),) + data.type.shape[k:]
    return _take_merged(ctx, data, merged, 0, flat_index)


def _take_merged(ctx: Ctx, x: Value, merged: tuple[Dim, ...], axis: int, flat_index: np.ndarray) -> Value:
    view = reshape(ctx, x, list(merged), allow_zero=True)
    return ctx.emit("take", [view, ctx.graph.add_param("flat_index", flat_index)], axis=axis)


def checked_positions(ctx: Ctx, idx: Value, n: Any) -> Value:
    """idx read through arange(n) with wrap: a negative id wraps once (as ONNX's gathers and scatters
    allow) and any other id out of range is refused at run time by that lookup's range check."""
    if not isinstance(n, int):
        raise ConversionError("indexing along a symbolic dim")
    positions = ctx.graph.add_param("positions", np.arange(n, dtype=np.int64))
    return ctx.emit("take", [positions, ctx.as_dtype(idx, "int64")], axis=0, wrap=True)


def _gather_nd_computed(ctx: Ctx, x: Value, idx: Value, b: int) -> Value:
    """indices [*batch, *Q, k] computed in the graph: their k columns range-checked and combined into one
    flat position over x's dims b..b+k-1, then a `gather` along that merged axis per batch element."""
    k = idx.type.shape[-1]
    if not isinstance(k, int) or not 1 <= k <= x.type.rank - b:
        raise ConversionError(f"GatherND indices' last dim {k} must be static and at most {x.type.rank - b}")
    batch, dims, rest = x.type.shape[:b], x.type.shape[b:b + k], x.type.shape[b + k:]
    queries = idx.type.shape[b:-1]
    if not all(isinstance(d, int) for d in (*batch, *dims, *rest, *queries)):
        raise ConversionError("GatherND with computed indices over symbolic dims")
    flat = None
    for j, d in enumerate(dims):
        column = ctx.emit("reshape", [ctx.emit("slice", [idx], axis=idx.type.rank - 1, start=j, end=j + 1,
                                               step=1)], shape=idx.type.shape[:-1])
        checked = checked_positions(ctx, column, d)
        flat = checked if flat is None else ctx.emit("add", [ctx.emit("mul", [flat, ctx.const(d, "int64")]),
                                                             checked])
    nb, nq, nm, nr = (int(np.prod(s, dtype=np.int64)) for s in (batch, queries, dims, rest))
    data = ctx.emit("reshape", [x], shape=(nb, nm, nr))
    index = ctx.emit("expand", [ctx.emit("reshape", [flat], shape=(nb, nq, 1))], shape=(nb, nq, nr))
    out = ctx.emit("gather", [data, index], axis=1)
    return ctx.emit("reshape", [out], shape=tuple(batch) + tuple(queries) + tuple(rest))


def _gather_nd(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    indices = _static_indices(ctx, node, 1)
    batch_dims = int(node.attr("batch_dims", 0))
    if batch_dims != 0 or indices is None:
        return _gather_nd_computed(ctx, x, ctx.value(node, 1), batch_dims)
    k = indices.shape[-1]
    dims = x.type.shape[:k]
    if not all(isinstance(d, int) for d in dims):
        raise ConversionError("GatherND over symbolic dims")
    flat = np.zeros(indices.shape[:-1], dtype=np.int64)
    for j, d in enumerate(dims):
        flat = flat * d + np.where(indices[..., j] < 0, indices[..., j] + d, indices[..., j])
    return gather_leading(ctx, x, k, flat)


def _gather_elements(ctx: Ctx, node: OnnxNode) -> Value:
    """out[..., j, ...] = x[..., idx[..., j, ...], ...] along `axis`, as a one-hot select-and-sum (exact:
    the sum adds zeros) over a new last axis: sum(where(idx[..., None] == arange(n), x', 0), -1)."""
    x, idx = ctx.value(node, 0), ctx.value(node, 1)
    axis = onnx_axis(int(node.attr("axis", 0)), x.type.rank)
    n = x.type.shape[axis]
    if not isinstance(n, int) or not is_int(idx.type.dtype) or idx.type.rank != x.type.rank:
        raise ConversionError("GatherElements needs a static gathered axis and integer indices of x's rank")
    if any(i != axis and a != b for i, (a, b) in enumerate(zip(idx.type.shape, x.type.shape))):
        raise ConversionError("GatherElements with indices smaller than the data on a non-gathered axis")
    idx = ctx.as_dtype(idx, "int64")
    idx = ctx.emit("where", [ctx.emit("lt", [idx, ctx.const(0, "int64")]),
                             ctx.emit("add", [idx, ctx.const(n, "int64")]), idx])
    one_hot = ctx.emit("eq", [reshape(ctx, idx, list(idx.type.shape) + [1], allow_zero=True),
                              ctx.const(np.arange(n).reshape((1,) * x.type.rank + (n,)), "int64")])
    rank = x.type.rank
    moved = permute(ctx, x, tuple(a for a in range(rank) if a != axis) + (axis,))
    shape = list(moved.type.shape[:-1])
    shape.insert(axis, 1)
    spread = reshape(ctx, moved, shape + [n], allow_zero=True)
    picked = ctx.emit("where", [one_hot, spread, ctx.const(0, x.type.dtype)])
    return ctx.emit("sum", [picked], axes=(rank,), keepdims=False)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Gather": _gather, "GatherND": _gather_nd, "GatherElements": _gather_elements,
}
