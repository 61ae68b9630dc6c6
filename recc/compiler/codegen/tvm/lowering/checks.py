"""Index range checks inside the compiled function (kernels/cpu/checks.py): TVM's gathers do not check
bounds, so no gather is emitted unless its indices are proven in range.

- check_ids: an ids input whose limits (input_checks.id_checks) the kernel can express is checked first
  thing in the function; every consumer reads the check's in-place result.
- guarded_args: every gather lowering takes its arguments from here. The indices are covered when they
  are constants in range (checked now), or trace (input_checks.trace_ids) to an input the first check
  covers with bounds at least as tight; anything else (ids computed in the graph, int32 ids, wrapping
  gathers, limits the first check cannot express) is checked by a kernel right before the gather. A
  gather that wraps negative ids (`take` with wrap) then reads `ids + rows` where `ids < 0`.
- The driver refuses a gather lowering that did not take its arguments from guarded_args
  (UncheckedGatherError).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from recc.compiler.artifact import IdLimit, id_bounds
from recc.compiler.codegen.tvm.kernels.cpu.checks import id_range_check
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.input_checks import Requirement, offsets_source, requirement, trace_ids
from recc.compiler.interpreter import checked_index
from recc.compiler.ir import Node, Value, trace_view

_NO_LIMIT = np.iinfo(np.uint64).max


class UncheckedGatherError(AssertionError):
    """A gather would be emitted whose indices nothing checks (a recc bug, never a user error)."""


def check_ids(lw: LoweringContext, value: Value) -> None:
    """Range-check an ids input first thing in the function, if its limits lie along one static axis (or
    cover it whole); every consumer then reads the check's in-place result, so the check runs before any
    gather. Other limits stay with the runtime's check before the call (and the checks before gathers)."""
    limits, shape = lw.id_limits.get(value.name), value.type.shape
    if not limits or value.type.dtype != "int64" or len({lim.axis for lim in limits}) != 1 \
            or len({lim.wrap for lim in limits}) != 1:
        return
    axis, shift = limits[0].axis, 0
    if limits[0].wrap:  # w[ids]: -rows <= id < rows, as id + rows < 2 * rows; one table's rows only
        if axis is not None or len({lim.rows for lim in limits}) != 1:
            return
        shift = limits[0].rows
        bounds = np.array([2 * shift], np.uint64)
    elif axis is None:
        bounds = np.array([min(lim.rows for lim in limits)], np.uint64)
    elif isinstance(shape[axis], int):
        bounds = id_bounds(limits, shape[axis])  # the uint64 bounds the runtime uses, bit for bit
    else:
        return
    lw.exprs[id(value)] = _emit_check(lw, value, lw.exprs[id(value)], axis, bounds, shift)
    lw.input_bounds[value.name] = (axis, bounds, shift)
    if lw.counting:
        lw.checked_inputs.append(value.name)


def _emit_check(lw: LoweringContext, value: Value, expr: relax.Expr, axis: int | None, bounds: np.ndarray,
                shift: int) -> relax.Expr:
    """The check kernel on `expr` (in place: it returns its argument), ids + shift < bounds as uint64."""
    rank, dtype = value.type.rank, value.type.dtype
    fn = lw.kernel(("check_ids", rank, axis, len(bounds), dtype, shift),
                   lambda: id_range_check(rank, axis, len(bounds), dtype, shift))
    return lw.emit(relax.call_tir_inplace(fn, [expr, relax.const(bounds.view(np.int64), "int64")], 0,
                                          lw.struct(value)))


def _covered_by_input_check(lw: LoweringContext, req: Requirement) -> bool:
    """True if the check at the top of the function already proves `req` (same or tighter bounds)."""
    if req.ids.type.dtype not in ("int64", "int32"):
        return False
    pieces = _concat_pieces(req)
    if pieces is not None:
        return all(_covered_by_input_check(lw, piece) for piece in pieces)
    source, region = trace_ids(req.ids)
    if source is None or source.name not in lw.input_bounds:
        return False
    axis, bounds, shift = lw.input_bounds[source.name]
    if req.wrap or shift:  # a wrapping check covers a wrapping gather of the same table size only
        rows = req.columns[0][2]
        return bool(req.wrap and req.axis is None and axis is None and shift == rows and bounds[0] <= 2 * rows)
    if req.axis is not None:  # per-column requirement: on the input, or a reshape merging its trailing axes
        have = _flat_bounds(source, req.ids, axis, bounds, req.axis)
        if have is None:
            return False
        need = id_bounds([IdLimit(req.axis, s, e, r) for s, e, r in req.columns], len(have))  # type: ignore[arg-type]
        return bool(np.all(have <= need))
    rows = np.uint64(req.columns[0][2])
    if axis is not None and region is not None and region[0] == axis:  # the region's own bounds
        return bool(np.all(bounds[region[1]:region[2]] <= rows))
    return bool(np.all(bounds <= rows))  # one bound, or every bound along the axis


def _concat_pieces(req: Requirement) -> list[Requirement] | None:
    """A per-column requirement on a concat along its axis (a batched lookup over several ids inputs) as
    one requirement per concatenated piece, each with the columns that fall in it; else None."""
    node = req.ids.producer
    if req.axis is None or node is None or node.op != "concat" or node.attrs["axis"] % req.ids.type.rank != req.axis:
        return None
    pieces, offset = [], 0
    for piece in node.inputs:
        width = piece.type.shape[req.axis]
        if not isinstance(width, int):
            return None
        cols = tuple((max(s, offset) - offset, min(e, offset + width) - offset, r)
                     for s, e, r in req.columns if s < offset + width and e > offset)
        if cols:  # a piece no table reads needs nothing
            pieces.append(Requirement(piece, req.axis, cols))
        offset += width
    return pieces


def _flat_bounds(source: Value, ids: Value, axis: int | None, bounds: np.ndarray, at: int) -> np.ndarray | None:
    """The input check's bounds for each position along axis `at` of `ids`, where `ids` is `source` or a
    reshape of it that keeps the axes before `at` and merges the rest into one; else None."""
    shape, rank = source.type.shape, source.type.rank
    if trace_view(ids, ("reshape",))[0] is not source or ids.type.rank != at + 1 \
            or tuple(shape[:at]) != tuple(ids.type.shape[:at]) or not all(isinstance(d, int) for d in shape[at:]):
        return None
    if axis is None:
        return np.broadcast_to(bounds, (int(np.prod(shape[at:])),))
    if axis < at:
        return None
    per_axis = bounds.reshape((-1,) + (1,) * (rank - axis - 1))
    return np.broadcast_to(per_axis, tuple(shape[at:])).reshape(-1)  # type: ignore[arg-type]


def _constant_indices(lw: LoweringContext, node: Node, req: Requirement) -> relax.Expr:
    """Constant indices: checked here (a compile error if out of range), wrapped ahead of time."""
    array = lw.graph.param_array(req.ids)
    rows = req.columns[0][2] if req.axis is None else None
    if rows is None:  # per-column (batched lookups): check each column range
        for start, end, r in req.columns:
            checked_index(np.asarray(array)[:, start:end], r)  # type: ignore[arg-type]
        return lw.value(req.ids)
    try:
        wrapped = checked_index(array, rows, req.wrap).astype(array.dtype)  # type: ignore[arg-type]
    except IndexError as e:
        raise ValueError(f"{node.op} %{node.output.name}: constant index out of range ({e})") from e
    return relax.const(wrapped, str(wrapped.dtype)) if req.wrap else lw.value(req.ids)


def _require_runtime_offsets_check(node: Node) -> None:
    """Offsets are checked by the runtime before every call (input_checks records them when the offsets
    and the ids are whole inputs); refuse offsets it cannot check."""
    ids_source, ids_region = trace_ids(node.inputs[1])
    off_source, _ = offsets_source(node.inputs[2])
    if ids_source is None or ids_region is not None or off_source is None or ids_source.type.rank != 1:
        raise UncheckedGatherError(f"embedding_bag %{node.output.name}: its offsets are computed in the graph "
                                   "and cannot be checked; pass offsets and ids as inputs")


def guarded_args(lw: LoweringContext, node: Node) -> list[relax.Expr]:
    """`node`'s arguments, its indices (input 1) proven or checked in range, and wrapped where it wraps."""
    req = requirement(node)
    args = lw.args(node)
    lw.guarded.add(id(node))
    if node.op == "embedding_bag" and node.attrs["layout"] == "offsets":
        _require_runtime_offsets_check(node)
    if req.ids.kind == "param":
        args[1] = _constant_indices(lw, node, req)
        return args
    if any(rows is None for _, _, rows in req.columns):
        raise UncheckedGatherError(f"{node.op} %{node.output.name}: a gather along a symbolic dim cannot be "
                                   "range-checked")
    if not _covered_by_input_check(lw, req):
        if req.axis is None:
            rows = req.columns[0][2]
            bounds = np.array([2 * rows if req.wrap else rows], np.uint64)  # type: ignore[operator]
            args[1] = _emit_check(lw, req.ids, args[1], None, bounds, rows if req.wrap else 0)  # type: ignore[arg-type]
        else:
            limits = [IdLimit(req.axis, s, e, r) for s, e, r in req.columns]  # type: ignore[arg-type]
            size = req.ids.type.shape[req.axis]
            args[1] = _emit_check(lw, req.ids, args[1], req.axis, id_bounds(limits, size), 0)  # type: ignore[arg-type]
    if req.wrap:
        dtype = req.ids.type.dtype
        rows, zero = relax.const(req.columns[0][2], dtype), relax.const(0, dtype)
        args[1] = lw.emit(relax.op.where(relax.op.less(args[1], zero), relax.op.add(args[1], rows), args[1]))
    if node.op in ("embedding_bag", "batched_embedding_bag"):  # recc's kernels read int64 ids and offsets
        for i in (1, 2) if node.attrs.get("layout") == "offsets" else (1,):
            if node.inputs[i].type.dtype != "int64":
                args[i] = lw.emit(relax.op.astype(args[i], "int64"))
    return args
