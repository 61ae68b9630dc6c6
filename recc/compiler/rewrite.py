"""The rule language of rewrite passes: a rule matches at a root node, declines with a reason, or
rewrites through the graph builder. The pass (not the rule) splices the result in and records
provenance, so a rule is only pattern + legality + replacement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from recc.compiler.ir import Graph, Node, Value


@dataclass(frozen=True)
class Reject:
    """A rule looked at a node and declined; `reason` is counted in the pass report."""

    reason: str


@dataclass
class Match:
    """What a rule found; `nodes` are the ones it replaces (the root last), `data` anything else."""

    nodes: list[Node]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    root_op: str | tuple[str, ...]
    match: Callable[[Graph, Node], "Match | Reject | None"]
    rewrite: Callable[[Graph, Node, Match], Value]

    def applies_to(self, node: Node) -> bool:
        return node.op == self.root_op if isinstance(self.root_op, str) else node.op in self.root_op


def single_user(value: Value, graph: Graph) -> bool:
    return len(value.users) == 1 and value not in graph.outputs


def producer_op(value: Value, op: str | tuple[str, ...]) -> Node | None:
    node = value.producer
    if node is None:
        return None
    return node if (node.op == op if isinstance(op, str) else node.op in op) else None


def constant_scalar(graph: Graph, value: Value) -> float | None:
    """The scalar a parameter holds if it is a constant of one element (any shape), else None."""
    array = graph.param_array(value)
    if array is None or array.size != 1:
        return None
    return float(array.reshape(-1)[0])


def is_zero(graph: Graph, value: Value) -> bool:
    """True if `value` is all zeros: a zero constant, or a zero constant broadcast or reshaped."""
    array = graph.param_array(value)
    if array is not None:
        return not array.any()
    node = value.producer
    return node is not None and node.op in ("expand", "reshape") and is_zero(graph, node.inputs[0])
