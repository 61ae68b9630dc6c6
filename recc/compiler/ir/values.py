"""Queries about values that passes (and the compiler around them) ask: who produces a value, who uses
it, which constant it holds, and which tensor it is a view of. Pure reads: nothing here edits a graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recc.compiler.ir.graph import Graph, Node, Value

VIEW_OPS = ("reshape", "slice")


def producer_op(value: Value, op: str | tuple[str, ...]) -> Node | None:
    """The node that produces `value` if its op is `op` (or one of `op`), else None."""
    node = value.producer
    if node is None:
        return None
    return node if (node.op == op if isinstance(op, str) else node.op in op) else None


def single_user(graph: Graph, value: Value) -> bool:
    """True if exactly one node reads `value` and it is not a graph output (so a rewrite may absorb it)."""
    return len(value.users) == 1 and value not in graph.outputs


def constant_scalar(graph: Graph, value: Value,
                    evaluate: Callable[[Graph, Value, int], np.ndarray | None] | None = None) -> float | None:
    """The number a one-element constant holds (any shape of ones), else None. A constant is a parameter;
    with `evaluate` (e.g. interpreter.constant_value) also an expression of parameters it can compute."""
    if value.kind == "input" or any(d != 1 for d in value.type.shape):
        return None
    array = graph.param_array(value)
    if array is None and evaluate is not None and value.kind == "node":
        array = evaluate(graph, value, 1)
    if array is None or array.size != 1:
        return None
    return float(np.asarray(array).reshape(-1)[0])


def is_zero(graph: Graph, value: Value) -> bool:
    """True if `value` is all zeros: a zero constant, or a zero constant broadcast or reshaped."""
    array = graph.param_array(value)
    if array is not None:
        return not array.any()
    node = value.producer
    return node is not None and node.op in ("expand", "reshape") and is_zero(graph, node.inputs[0])


def trace_view(value: Value, ops: tuple[str, ...] = VIEW_OPS,
               stop: Callable[[Node], bool] | None = None) -> tuple[Value, list[Node]]:
    """Follow view producers (reshapes and slices by default) from `value` back to the tensor they view.

    Returns (source, views): `views` are the view nodes walked, nearest to `value` first, so `source` is
    `views[-1].inputs[0]` (or `value` itself when no producer is a view). The walk stops at the first
    producer whose op is not in `ops` or for which `stop(node)` is true. Callers read the views to map
    coordinates (input_checks: which slice of an input ids come from; fuse-recurrent: which time step)."""
    views: list[Node] = []
    while value.producer is not None and value.producer.op in ops and not (stop is not None and stop(value.producer)):
        views.append(value.producer)
        value = value.producer.inputs[0]
    return value, views


__all__ = ["VIEW_OPS", "constant_scalar", "is_zero", "producer_op", "single_user", "trace_view"]
