"""Which inputs carry gather indices (embedding ids), and the range each part of them must lie in.

TVM's gathers do not check bounds: an id >= rows reads another table's rows or unmapped memory. So every
gather (`embedding`, `embedding_bag`, `batched_embedding_bag`, `take`, `gather`) states what its indices must satisfy
(`requirement`): `0 <= id < rows`, or `-rows <= id < rows` for a gather that wraps a negative id once
(`take` with `wrap`, which `w[ids]` and ONNX Gather produce). At compile time we trace each gather's
indices back through slices, reshapes, transposes and value-preserving casts to a graph input
(`trace_ids`) and record `input[..., start:end along axis, ...]` against `rows`. Codegen turns these into
a check kernel at the top of the compiled function (codegen's kernels/cpu/checks.py) where it can; the
runtime checks the others before the call. Indices that cannot be traced (computed in the graph:
arithmetic, hashing) are listed as `unchecked` by the runtime: codegen range-checks them inside the
compiled function right before their gather (lowering/checks.py), and refuses to emit any gather that
neither check covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from recc.compiler.artifact import IdChecks, IdLimit, OffsetCheck
from recc.compiler.ir import Graph, Node, Value, trace_view
from recc.compiler.ir.fused_ops import batched_table_layout

GATHER_OPS = ("embedding", "embedding_bag", "batched_embedding_bag", "take", "gather", "scatter")

# casts that keep every integer value as it is (so a check on the source is a check on the cast)
_INT_BITS = {"bool": 1, "uint8": 8, "int8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64}


def _value_preserving_cast(node: Node) -> bool:
    if node.op != "cast":
        return True
    src, dst = node.inputs[0].type.dtype, node.attrs["dtype"]
    if src not in _INT_BITS or dst not in ("int32", "int64"):
        return False
    return _INT_BITS[src] < _INT_BITS[dst] or src == dst


def trace_ids(value: Value) -> tuple[Value | None, tuple[int, int, int] | None]:
    """Follow slices, reshapes, transposes and value-preserving casts from `value` to a graph input.

    Returns (input, (axis, start, end)) when `value` holds exactly the ids of that region of the input
    (as a set: a reshape after the slice keeps it), (input, None) for the whole input, and (None, None)
    when the walk ends anywhere else or coordinates stop mapping (a slice after a reshape, slices along two
    axes, a strided or symbolic slice)."""
    source, views = trace_view(value, ("reshape", "slice", "cast", "permute"),
                               stop=lambda n: not _value_preserving_cast(n))
    if source.kind != "input":
        return None, None
    axes: list[int] | None = list(range(source.type.rank))  # current axis -> source axis; None after a reshape
    region: dict[int, tuple[int, int]] = {}
    for node in reversed(views):  # from the source outwards
        if node.op == "reshape":
            axes = None
        elif node.op == "permute" and axes is not None:
            axes = [axes[p] for p in node.attrs["perm"]]
        elif node.op == "slice":
            size = node.inputs[0].type.shape[node.attrs["axis"]]
            end = node.attrs["end"] if node.attrs["end"] is not None else size
            if axes is None or node.attrs.get("step", 1) != 1 or not isinstance(end, int) \
                    or not isinstance(node.attrs["start"], int):
                return None, None
            end = min(end, size) if isinstance(size, int) else end
            src = axes[node.attrs["axis"]]
            offset = region.get(src, (0, 0))[0]
            region[src] = (offset + node.attrs["start"], offset + end)
            if len(region) > 1:
                return None, None
    if not region:
        return source, None
    (axis, (start, end)), = region.items()
    return source, (axis, start, end)


def offsets_source(value: Value) -> tuple[Value | None, int | None]:
    """(input, None) when an embedding_bag's offsets are a whole 1-D input, (input, k) when they are row k
    of a 2-D input [tables, batch] (reference DLRM's lS_o[k]); (None, None) when the runtime cannot see them."""
    source, region = trace_ids(value)
    if source is None or (region is None and source.type.rank == 1):
        return source, None
    if region is not None and source.type.rank == 2 and region[0] == 0 and region[2] == region[1] + 1:
        return source, region[1]
    return None, None


@dataclass(frozen=True)
class Requirement:
    """What a gather needs of its indices `ids`: along `axis` (None: all of them), each column range
    [start, end) below its `rows`, and >= 0, or >= -rows with `wrap`. `columns` has one entry when the
    axis is None; rows is None for a gather along a symbolic dim."""

    ids: Value
    axis: int | None
    columns: tuple[tuple[int, int, int | None], ...]
    wrap: bool = False


def requirement(node: Node) -> Requirement:
    """The range `node`'s indices must lie in (node.op in GATHER_OPS)."""
    if node.op == "batched_embedding_bag":
        cols = tuple((col, col + bag, rows) for rows, _, bag, col, _, _ in batched_table_layout(node.attrs))
        return Requirement(node.inputs[1], 1, cols)
    if node.op in ("take", "gather", "scatter"):
        table, axis = node.inputs[0], node.attrs["axis"] % node.inputs[0].type.rank
        rows = table.type.shape[axis]
        return Requirement(node.inputs[1], None, ((0, 0, rows if isinstance(rows, int) else None),),
                           bool(node.attrs.get("wrap")))
    return Requirement(node.inputs[1], None, ((0, 0, node.inputs[0].type.shape[0]),))


def input_limits(req: Requirement) -> tuple[Value, list[IdLimit]] | None:
    """The requirement as limits on a graph input, or None if its ids do not trace to one."""
    if any(rows is None for _, _, rows in req.columns):
        return None
    source, region = trace_ids(req.ids)
    if source is None:
        return None
    if req.axis is None:
        axis, start, end = region if region is not None else (None, None, None)
        return source, [IdLimit(axis, start, end, req.columns[0][2], req.wrap)]  # type: ignore[arg-type]
    if source is not req.ids:  # per-column limits only on the input itself
        return None
    return source, [IdLimit(req.axis, start, end, rows, req.wrap) for start, end, rows in req.columns]  # type: ignore[arg-type]


def _normalize(limits: list[IdLimit], shape: tuple) -> tuple[IdLimit, ...]:
    """A whole-input limit next to limits along one static axis becomes a limit on that axis's full
    range, so each part of the input keeps its own table's bound (not the smallest table's)."""
    axes = {lim.axis for lim in limits} - {None}
    if len(axes) == 1 and any(lim.axis is None for lim in limits):
        axis = axes.pop()
        if isinstance(shape[axis], int):
            return tuple(IdLimit(axis, 0, shape[axis], lim.rows, lim.wrap) if lim.axis is None else lim
                         for lim in limits)
    return tuple(limits)


def id_checks(graph: Graph) -> IdChecks:
    """The id range of every gather in `graph`, as the artifact records it (in_kernel is codegen's to fill)."""
    limits: dict[str, list[IdLimit]] = {}
    shapes: dict[str, tuple] = {}
    offsets: list[OffsetCheck] = []
    unchecked: list[str] = []
    for node in graph.nodes:
        if node.op not in GATHER_OPS or node.inputs[1].kind == "param":  # constants: checked when lowered
            continue
        traced = input_limits(requirement(node))
        if traced is None:
            unchecked.append(node.output.name)
            continue
        source, lims = traced
        limits.setdefault(source.name, []).extend(lims)
        shapes[source.name] = source.type.shape
        if node.op == "embedding_bag" and node.attrs["layout"] == "offsets":
            off_source, row = offsets_source(node.inputs[2])
            if off_source is None or lims[0].axis is not None:
                unchecked.append(node.output.name)
                continue
            offsets.append(OffsetCheck(off_source.name, source.name, bool(node.attrs.get("include_last_offset")),
                                       row))
    return IdChecks({name: _normalize(lims, shapes[name]) for name, lims in limits.items()}, tuple(offsets),
                    tuple(unchecked))
