"""op(a, b) computed twice -> computed once:  two nodes with the same op, the same inputs and the same
attributes become one (operands of commutative ops in any order; small constants that hold the same numbers count as the same input).

Why: frontends and hand-written models repeat work (`F.linear(x, w, b) * torch.sigmoid(F.linear(x, w,
b))`, the same `x > 0` for two `where`s, a scalar constant per use); each copy is a kernel and, for a
dense, a whole GEMM. Merging them also lets pattern passes see one value where the math has one
(x * sigmoid(x) needs the two x's to be the same value).
Legal: IR ops are pure and deterministic. A node whose output is a graph output is left alone (each
output stays its own value).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.rewrite import Builder, GroupPass, Reject

RULE = "duplicate-node"
CONSTANT_KEY_ELEMENTS = 64  # constants up to this size are compared by content
COMMUTATIVE = ("add", "mul", "maximum", "minimum", "eq", "ne")  # a + b and b + a are one node


def _input_key(graph: Graph, value: Value) -> Hashable:
    array = graph.param_array(value)
    if array is not None and array.size <= CONSTANT_KEY_ELEMENTS:
        return ("constant", str(array.dtype), array.shape, array.tobytes())
    return id(value)


def _node_key(graph: Graph, node: Node, merged: dict[int, Value]) -> Hashable:
    """What makes two nodes the same computation; `merged` maps the outputs of duplicates found so far to
    the values they become, so a node reading a duplicate matches one reading the kept node."""
    attrs: Any = repr(sorted(node.attrs.items()))
    inputs = [_input_key(graph, merged.get(id(v), v)) for v in node.inputs]
    if node.op in COMMUTATIVE:
        inputs.sort(key=repr)
    return node.op, tuple(inputs), attrs


class CSE(GroupPass[Node, tuple[Node, Node]]):
    name = "cse"
    summary = "compute each distinct (op, inputs, attributes) once"

    def candidates(self, graph: Graph) -> Iterator[tuple[str, Node | Reject]]:
        for node in graph.nodes:
            yield RULE, node

    def groups(self, graph: Graph, candidates: list[Node]) -> Iterator[tuple[str, tuple[Node, Node] | Reject]]:
        """(the first node, a later duplicate of it), in graph order."""
        first: dict[Hashable, Node] = {}
        merged: dict[int, Value] = {}
        for node in candidates:
            key = _node_key(graph, node, merged)
            kept = first.get(key)
            if kept is None:
                first[key] = node
            elif any(v in graph.outputs for v in node.outputs):
                yield RULE, Reject("the duplicate is a graph output (each output stays its own value)")
            else:
                merged.update((id(old), new) for old, new in zip(node.outputs, kept.outputs))
                yield RULE, (kept, node)

    def rewrite(self, builder: Builder, group: tuple[Node, Node]) -> None:
        kept, duplicate = group
        for old, new in zip(duplicate.outputs, kept.outputs):
            builder.replace(old, new)
