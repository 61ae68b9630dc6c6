"""Shape ops. On tensors they become IR reshape / permute / slice / concat / expand; on import-time arrays
(the Shape -> Gather -> Unsqueeze -> Concat chains exporters write to compute a reshape target from the
batch size) they are evaluated right here, symbolic dims included."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from onnx import numpy_helper

from recc.compiler.ir import Value, infer_types
from recc.compiler.ir.types import Dim, Sym, numel
from recc.frontends.onnx.context import ConversionError, Ctx, Lazy, OnnxNode, is_static, is_symbolic, onnx_axis

INT64_MAX = np.iinfo(np.int64).max


def dims_array(shape: tuple[Dim, ...]) -> np.ndarray:
    """A shape as an import-time 1-D array (int64, or object when a dim is symbolic)."""
    if all(isinstance(d, int) for d in shape):
        return np.asarray(shape, dtype=np.int64)
    return np.asarray(list(shape), dtype=object)


def _shape_of(v: Any) -> tuple[Dim, ...]:
    if isinstance(v, Value):
        return v.type.shape
    if is_static(v):
        return tuple(v.shape)
    raise ConversionError(f"the shape of {v.what} is not known")


def _shape(ctx: Ctx, node: OnnxNode) -> np.ndarray:
    shape = _shape_of(ctx.input(node, 0))
    start, end = node.attr("start", 0), node.attr("end")
    return dims_array(shape[start:end])


def _size(ctx: Ctx, node: OnnxNode) -> np.ndarray:
    total = numel(_shape_of(ctx.input(node, 0)))
    return np.asarray(total, dtype=object if isinstance(total, Sym) else np.int64)


def _target_shape(x_shape: tuple[Dim, ...], target: list[Dim], allow_zero: bool) -> tuple[Dim, ...]:
    shape = [x_shape[i] if (d == 0 and not allow_zero) else d for i, d in enumerate(target)]
    symbolic = [i for i, d in enumerate(shape) if isinstance(d, Sym)]
    # as the torch frontend does: a lone symbolic dim after the first is written -1 (inferred by reshape)
    if len(symbolic) == 1 and -1 not in shape and symbolic[0] != 0 and x_shape and isinstance(x_shape[0], Sym):
        shape[symbolic[0]] = -1
    return tuple(shape)


def reshape(ctx: Ctx, x: Any, target: list[Dim], allow_zero: bool = False) -> Any:
    if is_static(x):
        if x.dtype == object and not any(isinstance(d, Sym) for d in target):
            return x.reshape([int(d) for d in target])
        if any(isinstance(d, Sym) for d in target):
            raise ConversionError("reshaping an import-time array to a symbolic shape")
        return x.reshape([x.shape[i] if (d == 0 and not allow_zero) else int(d) for i, d in enumerate(target)])
    xv = ctx.as_value(x)
    shape = _target_shape(xv.type.shape, target, allow_zero)
    if infer_types("reshape", [xv.type], {"shape": shape})[0] == xv.type:
        return xv
    return ctx.emit("reshape", [xv], shape=shape)


def _reshape(ctx: Ctx, node: OnnxNode) -> Any:
    target = ctx.ints(node, 1, "Reshape's shape")
    if target is None:
        raise ConversionError("Reshape without a shape")
    return reshape(ctx, ctx.input(node, 0), target, bool(node.attr("allowzero", 0)))


def _flatten(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    shape = _shape_of(x)
    axis = int(node.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ConversionError(f"Flatten axis {axis} is out of range for a rank-{len(shape)} input")
    axis = axis + len(shape) if axis < 0 else axis
    return reshape(ctx, x, [numel(shape[:axis]), numel(shape[axis:])])


def _transpose(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    rank = len(_shape_of(x))
    perm = tuple(int(p) for p in node.attr("perm", list(range(rank))[::-1]))
    if is_static(x):
        return np.transpose(x, perm)
    return permute(ctx, ctx.value(node, 0), perm)


def permute(ctx: Ctx, x: Value, perm: tuple[int, ...]) -> Value:
    """A transpose of a transpose is written as one (exporters transpose and transpose back around gathers)."""
    producer = x.producer
    if producer is not None and producer.op == "permute":
        inner = tuple(producer.attrs["perm"])
        x, perm = producer.inputs[0], tuple(inner[p] for p in perm)
    return x if perm == tuple(range(len(perm))) else ctx.emit("permute", [x], perm=perm)


def _axes(ctx: Ctx, node: OnnxNode, rank: int | None, input_index: int = 1) -> list[int] | None:
    """The node's axes (attribute or input), each in range for `rank` (None: as written)."""
    axes = node.attr("axes")
    if axes is None and len(node.inputs) > input_index and node.inputs[input_index]:
        axes = ctx.ints(node, input_index, f"{node.op_type}'s axes")
    return None if axes is None else [int(a) if rank is None else onnx_axis(int(a), rank) for a in axes]


def _squeeze(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    shape = _shape_of(x)
    axes = _axes(ctx, node, len(shape))
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    if any(shape[a] != 1 for a in axes):
        raise ConversionError(f"squeezing axes {axes} of shape {[str(d) for d in shape]}")
    return reshape(ctx, x, [d for i, d in enumerate(shape) if i not in axes], allow_zero=True)


def _unsqueeze(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    shape = list(_shape_of(x))
    rank = len(shape) + len(_axes(ctx, node, None) or [])
    for a in sorted(_axes(ctx, node, rank) or []):
        shape.insert(a, 1)
    return reshape(ctx, x, shape, allow_zero=True)


def _concat(ctx: Ctx, node: OnnxNode) -> Any:
    items = [ctx.input(node, i) for i in range(len(node.inputs))]
    axis = int(node.attr("axis"))
    if all(is_static(v) for v in items):
        object_dtype = any(v.dtype == object for v in items)
        return np.concatenate([v.astype(object) if object_dtype else v for v in items], axis=axis)
    if any(isinstance(v, Lazy) or (is_static(v) and is_symbolic(v)) for v in items):
        return Lazy("a concatenation", tuple(items))
    values = [ctx.as_value(v, name=n) for v, n in zip(items, node.inputs)]
    dtype = values[0].type.dtype
    values = [v for v in values if 0 not in v.type.shape] or values[:1]
    rank = values[0].type.rank
    return values[0] if len(values) == 1 else ctx.emit("concat", [ctx.as_dtype(v, dtype) for v in values],
                                                       axis=onnx_axis(axis, rank))


def _slice_bounds(ctx: Ctx, node: OnnxNode, rank: int) -> list[tuple[int, Any, Any, int]]:
    if ctx.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = ctx.ints(node, 1, "Slice starts"), ctx.ints(node, 2, "Slice ends")
        axes = ctx.ints(node, 3, "Slice axes") or list(range(len(starts)))
        steps = ctx.ints(node, 4, "Slice steps") or [1] * len(starts)
    return [(onnx_axis(int(a), rank), s, e, int(st)) for a, s, e, st in zip(axes, starts, ends, steps)]


def _slice(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    bounds = _slice_bounds(ctx, node, len(_shape_of(x)))
    if is_static(x):
        index = [slice(None)] * x.ndim
        for axis, start, end, step in bounds:
            index[axis] = slice(_clamp_bound(start), _clamp_bound(end), step)
        return x[tuple(index)]
    out = ctx.value(node, 0)
    for axis, start, end, step in bounds:
        out = slice_axis(ctx, out, axis, start, end, step)
    return out


def _clamp_bound(b: Any) -> int | None:
    if isinstance(b, Sym):
        raise ConversionError(f"slice bound {b} is symbolic")
    return None if abs(int(b)) >= INT64_MAX // 2 else int(b)


def slice_axis(ctx: Ctx, x: Value, axis: int, start: Any, end: Any, step: int = 1) -> Value:
    size = x.type.shape[axis]
    if end == size or (isinstance(end, (int, np.integer)) and isinstance(size, int) and step > 0 and end >= size):
        end = INT64_MAX
    start_i, end_i = (0 if start == 0 else _clamp_bound(start)), _clamp_bound(end)
    if start_i in (0, None) and end_i is None and step == 1:
        return x
    return ctx.emit("slice", [x], axis=axis, start=start_i or 0, end=end_i, step=step)


def _split(ctx: Ctx, node: OnnxNode) -> list[Value]:
    x = ctx.value(node, 0)
    axis = onnx_axis(int(node.attr("axis", 0)), x.type.rank)
    size = x.type.shape[axis]
    sizes = node.attr("split") or ctx.ints(node, 1, "Split sizes")
    if not isinstance(size, int):
        raise ConversionError("splitting a symbolic dim")
    if not sizes:
        n = int(node.attr("num_outputs", len(node.outputs)))
        chunk = -(-size // n)
        sizes = [min(chunk, size - s) for s in range(0, size, chunk)]
    out, start = [], 0
    for s in sizes:
        out.append(slice_axis(ctx, x, axis, start, start + int(s)))
        start += int(s)
    return out


def _expand(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.input(node, 0)
    target = ctx.ints(node, 1, "Expand's shape")
    if is_static(x) and not any(isinstance(d, Sym) for d in target):
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(d) for d in target))).copy()
    xv = ctx.value(node, 0)
    rank = max(len(target), xv.type.rank)
    if xv.type.rank < rank:
        xv = ctx.emit("reshape", [xv], shape=(1,) * (rank - xv.type.rank) + xv.type.shape)
    full = [1] * (rank - len(target)) + list(target)
    shape = tuple(s if t == 1 else t for s, t in zip(xv.type.shape, full))
    return xv if shape == xv.type.shape else ctx.emit("expand", [xv], shape=shape)


def _range(ctx: Ctx, node: OnnxNode) -> Any:
    start, limit, delta = (np.ravel(ctx.static(node, i, "Range bound"))[0] for i in range(3))
    if any(isinstance(v, Sym) for v in (start, limit, delta)):
        return Lazy("a Range over the symbolic batch size", (start, limit, delta))
    return np.arange(start, limit, delta)


def _constant_of_shape(ctx: Ctx, node: OnnxNode) -> Any:
    shape = ctx.ints(node, 0, "ConstantOfShape's shape")
    value = node.attr("value")
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    if not any(isinstance(d, Sym) for d in shape):
        return np.full([int(d) for d in shape], fill.ravel()[0], dtype=fill.dtype)
    scalar = ctx.const(np.full((1,) * len(shape), fill.ravel()[0]), str(fill.dtype))
    return ctx.emit("expand", [scalar], shape=tuple(shape))


def _constant(ctx: Ctx, node: OnnxNode) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            if key == "value":
                return numpy_helper.to_array(v)
            return np.asarray(v, dtype=np.float32 if "float" in key else np.int64)
    raise ConversionError(f"Constant with attribute(s) {sorted(node.attrs)} is not supported")


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Shape": _shape, "Size": _size, "Reshape": _reshape, "Flatten": _flatten, "Transpose": _transpose,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Concat": _concat, "Slice": _slice, "Split": _split,
    "Expand": _expand, "Range": _range, "ConstantOfShape": _constant_of_shape, "Constant": _constant,
}

__all__ = ["CONVERTERS", "dims_array", "reshape", "permute", "slice_axis", "is_symbolic"]
