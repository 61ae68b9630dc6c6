"""Which inputs carry embedding ids, and the range each part of them must lie in.

TVM's gathers do not check bounds: an id >= rows reads another table's rows or unmapped memory. So at
compile time we trace every embedding op's ids (and offsets) back through slices and reshapes to a
graph input, and record `input[..., start:end along axis, ...] < rows`. Codegen turns these into a check
kernel at the top of the compiled function (codegen's kernels/cpu/checks.py), which fails the call before any gather
runs; limits it cannot express (several axes, a symbolic axis) and offsets are checked by the runtime
before the call. Ids computed inside the graph (e.g. hashing) cannot be
traced; they are listed as unchecked so the report says so.
"""

from __future__ import annotations

from recc.compiler.artifact import IdChecks, IdLimit, OffsetCheck
from recc.compiler.ir import Graph, Value, trace_view


def _trace(value: Value) -> tuple[Value | None, tuple[int, int, int] | None]:
    """Follow reshape/slice producers to a graph input; returns (input, (axis, start, end)) where the
    slice is in the input's coordinates, or (input, None) if the whole input flows, or (None, None)."""
    source, views = trace_view(value)
    if source.kind != "input":
        return None, None
    region: tuple[int, int, int] | None = None
    for node in views:  # nearest to `value` first
        if node.op == "reshape":  # a slice after a reshape: coordinates no longer map; be conservative
            region = None
        elif node.attrs.get("step", 1) == 1 and region is None:
            size = node.inputs[0].type.shape[node.attrs["axis"]]
            end = node.attrs["end"] if node.attrs["end"] is not None else size
            if not isinstance(end, int):
                return None, None
            region = (node.attrs["axis"], node.attrs["start"], end)
        else:
            return None, None
    return source, region


def id_checks(graph: Graph) -> IdChecks:
    """The id range of every lookup in `graph`, as the artifact records it (in_kernel is codegen's to fill)."""
    limits: dict[str, list[IdLimit]] = {}
    offsets: list[OffsetCheck] = []
    unchecked: list[str] = []
    for node in graph.nodes:
        if node.op not in ("embedding", "embedding_bag"):
            continue
        rows = node.inputs[0].type.shape[0]
        source, region = _trace(node.inputs[1])
        if source is None:
            unchecked.append(node.output.name)
            continue
        axis, start, end = region if region is not None else (None, None, None)
        limits.setdefault(source.name, []).append(IdLimit(axis, start, end, rows))
        if node.op == "embedding_bag" and node.attrs["layout"] == "offsets":
            off_source, off_region = _trace(node.inputs[2])
            if off_source is None or off_region is not None or region is not None:
                unchecked.append(node.output.name)
                continue
            offsets.append(OffsetCheck(off_source.name, source.name, bool(node.attrs.get("include_last_offset"))))
    return IdChecks({name: tuple(lims) for name, lims in limits.items()}, tuple(offsets), tuple(unchecked))
