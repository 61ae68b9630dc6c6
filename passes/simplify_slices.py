"""concat(slice(x, s:e), slice(x, e:f), ...) -> slice(x, s:f);  slice(x, 0:size) -> x

Why: batching lookups (and other fusions) replace T results by T slices of one buffer; their consumers
then concatenate those slices back in order. Merging adjacent slices turns that copy into a view, and a
slice of the whole axis into nothing.
Legal when the slices are of the same value along the concat axis, step 1, and adjacent in the order
the concat lists them.
"""

from __future__ import annotations

from ..compiler.ir import Graph, Node, Value
from ..compiler.pass_manager import RewritePass
from ..compiler.rewrite import Match, Rule


def _unit_slice(value: Value, axis: int) -> tuple[Value, int, int] | None:
    node = value.producer
    if node is None or node.op != "slice" or node.attrs.get("step", 1) != 1:
        return None
    rank = node.inputs[0].type.rank
    if node.attrs["axis"] % rank != axis % rank or node.attrs["end"] is None:
        return None
    return node.inputs[0], node.attrs["start"], node.attrs["end"]


def _runs(node: Node) -> list[list[Value]]:
    """The concat's inputs grouped into runs of adjacent slices of one value (other inputs: runs of 1)."""
    runs: list[list[Value]] = []
    previous = None
    for v in node.inputs:
        this = _unit_slice(v, node.attrs["axis"])
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


def _rewrite_concat(graph: Graph, node: Node, match: Match) -> Value:
    axis = node.attrs["axis"]
    parts = []
    for run in match.data["runs"]:
        if len(run) == 1:
            parts.append(run[0])
            continue
        source, start, _ = _unit_slice(run[0], axis)
        end = _unit_slice(run[-1], axis)[2]
        parts.append(graph.add_node("slice", [source], {"axis": axis, "start": start, "end": end, "step": 1}).output)
    if len(parts) == 1:
        return parts[0]
    return graph.add_node("concat", parts, {"axis": axis}, name=node.output.name).output


def _match_whole(graph: Graph, node: Node) -> Match | None:
    source = node.inputs[0]
    if node.attrs.get("step", 1) == 1 and source.type.shape == node.output.type.shape and node.output not in graph.outputs:
        return Match([node])
    return None


class SimplifySlices(RewritePass):
    name = "simplify-slices"
    summary = "merge a concat of adjacent slices of one value into one slice; drop whole-axis slices"
    rules = (Rule("concat-of-adjacent-slices", "concat", _match_concat, _rewrite_concat),
             Rule("whole-slice", "slice", _match_whole, lambda g, n, m: n.inputs[0]))
