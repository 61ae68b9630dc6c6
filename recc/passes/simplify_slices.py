"""concat(slice(x, s:e), slice(x, e:f), ...) -> slice(x, s:f);  slice(x, 0:size) -> x
stack(slice(x, s:s+D), slice(x, s+D:s+2D), ...) -> reshape(slice(x, s:s+kD), [B, k, D])

Why: batching lookups (and other fusions) replace T results by T slices of one buffer; their consumers
then concatenate those slices back in order. Merging adjacent slices turns that copy into a view, and a
slice of the whole axis into nothing.
Legal when the slices are of the same value along the concat axis, step 1, and adjacent in the order
the concat lists them.
"""

from __future__ import annotations

from collections.abc import Callable

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.rewrite import Builder, Match, RewritePass, Rule


def _unit_slice(value: Value, axis: int) -> tuple[Value, int, int] | None:
    node = value.producer
    if node is None or node.op != "slice" or node.attrs.get("step", 1) != 1:
        return None
    rank = node.inputs[0].type.rank
    if node.attrs["axis"] % rank != axis % rank or node.attrs["end"] is None:
        return None
    return node.inputs[0], node.attrs["start"], node.attrs["end"]


def _runs(node: Node, piece: Callable[[Value, int], tuple[Value, int, int] | None] = _unit_slice) -> list[list[Value]]:
    """The concat's inputs grouped into runs of adjacent pieces of one value (other inputs: runs of 1);
    a piece is what `piece` (default: a slice along the concat axis) finds: (source, start, end)."""
    runs: list[list[Value]] = []
    previous = None
    for v in node.inputs:
        this = piece(v, node.attrs["axis"])
        if runs and this is not None and previous is not None and this[0] is previous[0] and this[1] == previous[2]:
            runs[-1].append(v)
        else:
            runs.append([v])
        previous = this
    return runs


def _match_concat(graph: Graph, node: Node) -> Match | None:
    if len(node.inputs) == 1:
        return Match([node], {"runs": [node.inputs]})
    runs = _runs(node)
    return Match([node], {"runs": runs}) if len(runs) < len(node.inputs) else None


def _rewrite_concat(b: Builder, node: Node, match: Match) -> Value:
    axis = node.attrs["axis"]
    parts = []
    for run in match.data["runs"]:
        if len(run) == 1:
            parts.append(run[0])
            continue
        source, start, _ = _unit_slice(run[0], axis)
        end = _unit_slice(run[-1], axis)[2]
        parts.append(b.slice(source, axis, start, end))
    if len(parts) == 1:
        return parts[0]
    return b.op("concat", parts, {"axis": axis}, name=node.output.name)


def _stacked_piece(value: Value, axis: int) -> tuple[Value, int, int] | None:
    """value = reshape(slice(x [B, N], last axis, s:e), [B, 1, e - s]) stacked on axis 1: (x, s, e)."""
    node = value.producer
    if axis != 1 or node is None or node.op != "reshape" or value.type.rank != 3 or value.type.shape[1] != 1:
        return None
    inner = node.inputs[0]
    if inner.type.rank != 2 or inner.type.shape != (value.type.shape[0], value.type.shape[2]):
        return None
    return _unit_slice(inner, 1)


def _match_stack(graph: Graph, node: Node) -> Match | None:
    runs = _runs(node, _stacked_piece)  # equal widths: concat's type rule requires them
    return Match([node], {"runs": runs}) if len(runs) < len(node.inputs) else None


def _rewrite_stack(b: Builder, node: Node, match: Match) -> Value:
    parts = []
    for run in match.data["runs"]:
        if len(run) == 1:
            parts.append(run[0])
            continue
        source, start, end = _stacked_piece(run[0], 1)
        width = end - start
        piece = b.slice(source, 1, start, start + len(run) * width)
        parts.append(b.reshape(piece, (source.type.shape[0], len(run), width)))
    if len(parts) == 1:
        return parts[0]
    return b.op("concat", parts, {"axis": 1}, name=node.output.name)


def _match_whole(graph: Graph, node: Node) -> Match | None:
    source = node.inputs[0]
    if node.attrs.get("step", 1) == 1 and source.type.shape == node.output.type.shape and node.output not in graph.outputs:
        return Match([node])
    return None


class SimplifySlices(RewritePass):
    name = "simplify-slices"
    summary = "merge a concat (or stack) of adjacent slices of one value into one slice; drop whole-axis slices"
    rules = (Rule("concat-of-adjacent-slices", "concat", _match_concat, _rewrite_concat),
             Rule("stack-of-adjacent-slices", "concat", _match_stack, _rewrite_stack),
             Rule("whole-slice", "slice", _match_whole, lambda b, n, m: n.inputs[0]))
