"""Time-step views: which step of which [B, L, ...] sequence a [B, W] value inside a cell reads."""

from __future__ import annotations

from dataclasses import dataclass

from recc.compiler.ir import Node, Value, trace_view


@dataclass(frozen=True)
class TimeView:
    """value == base[:, t, offset:offset + width] (base [B, L, F]; or [B, L] with offset 0, width 1)."""

    base: Value
    t: int
    offset: int
    width: int


def _reshape_kind(node: Node) -> str | None:
    """How a reshape moves between a step's view and the sequence: drops a time axis of 1, or adds a
    feature axis of 1 (a [B, L] score viewed as [B, L, 1]); None for any other reshape."""
    s, d = node.inputs[0].type.shape, node.output.type.shape
    if len(s) == 3 and s[1] == 1 and d == (s[0], s[2]):
        return "drops-time"
    if len(s) == 2 and d == (s[0], s[1], 1):
        return "adds-feature"
    return None


def time_view(value: Value) -> TimeView | None:
    """Trace `value` [B, W] back through slices and reshapes to a [B, L, ...] tensor sliced at one time step."""
    width = value.type.shape[-1] if value.type.rank == 2 else None
    if value.type.rank != 2 or not isinstance(width, int):
        return None
    base, views = trace_view(value, stop=lambda node: node.op == "reshape" and _reshape_kind(node) is None)
    t, offset = None, 0
    for node in views:
        src = node.inputs[0]
        if node.op == "slice":
            axis, rank = node.attrs["axis"] % src.type.rank, src.type.rank
            end = node.attrs["end"] if node.attrs["end"] is not None else src.type.shape[axis]
            if node.attrs.get("step", 1) != 1 or not isinstance(end, int):
                return None
            if rank == 3 and axis == 1 and t is None and end - node.attrs["start"] == 1:
                t = node.attrs["start"]
            elif axis == rank - 1:
                offset += node.attrs["start"]
            else:
                return None
        elif _reshape_kind(node) == "adds-feature" and t is None:
            return None
    if t is None:
        return None
    if base.type.rank == 2:  # scores [B, L], viewed through [B, L, 1]
        return TimeView(base, t, 0, 1) if offset == 0 and width == 1 else None
    return TimeView(base, t, offset, width) if base.type.rank == 3 else None
