"""op(constants) -> constant;  x * 1, x / 1, x + 0, x - 0 -> x

Why: frontends spell constants as small expressions (BatchNorm's sqrt(var + eps), `1 / t` as
reciprocal(t) * 1, a scaled or transposed weight written in forward()); computing them once at compile
time saves a kernel per call, and leaves the patterns other passes match free of no-op arithmetic.
Legal: IR ops are pure, so an op of parameters always yields the same array. The reference interpreter
computes it (the same numpy semantics the graph had). What gets materialized is bounded: a result is
stored only when it has a static shape and at most max(FREE_ELEMENTS, the elements of its inputs) and
MAX_ELEMENTS elements, so broadcasting a scalar to a huge tensor stays an op. The identities are legal
when the result has the same type as x (the constant does not broadcast x to a larger shape).
"""

from __future__ import annotations

import numpy as np

from recc.compiler.interpreter import KERNELS, run_node
from recc.compiler.ir import Graph, Node, Value
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule

FREE_ELEMENTS = 1 << 16  # a result this small is always stored
MAX_ELEMENTS = 1 << 24  # and none larger than this


def _match_constant(graph: Graph, node: Node) -> Match | Reject | None:
    if len(node.outputs) != 1 or not node.inputs or any(v.kind != "param" for v in node.inputs):
        return None
    shape = node.output.type.shape
    if node.output in graph.outputs or not all(isinstance(d, int) for d in shape):
        return None
    if not shape:
        return Reject("result is 0-d")  # parameters are stored at least 1-d
    elements = int(np.prod(shape, dtype=np.int64))
    inputs = sum(graph.params[v.name].size for v in node.inputs)
    if elements > min(max(FREE_ELEMENTS, inputs), MAX_ELEMENTS):
        return Reject("result is too large to materialize")
    return Match([node])


def _rewrite_constant(b: Builder, node: Node, match: Match) -> Value:
    array = run_node(node, [np.asarray(b.graph.params[v.name]) for v in node.inputs], {})[0]
    return b.param(node.output.name, np.asarray(array, dtype=node.output.type.dtype))


def _is_constant(graph: Graph, value: Value, number: float) -> bool:
    array = graph.param_array(value)
    return array is not None and array.size <= 1 << 16 and bool(np.all(array == number))


def _identity(number: float, sides: tuple[int, ...]):
    def match(graph: Graph, node: Node) -> Match | None:
        for i in sides:
            x = node.inputs[1 - i]
            if _is_constant(graph, node.inputs[i], number) and x.type == node.output.type \
                    and node.output not in graph.outputs:
                return Match([node], {"x": x})
        return None
    return match


def _rewrite_identity(b: Builder, node: Node, match: Match) -> Value:
    return match.data["x"]


class FoldConstants(RewritePass):
    name = "fold-constants"
    summary = "compute ops whose inputs are all constants at compile time; drop x*1 and x+0"
    rules = (Rule("evaluate-constant", tuple(KERNELS), _match_constant, _rewrite_constant),
             Rule("multiply-by-one", "mul", _identity(1.0, (0, 1)), _rewrite_identity),
             Rule("divide-by-one", "div", _identity(1.0, (1,)), _rewrite_identity),
             Rule("add-zero", "add", _identity(0.0, (0, 1)), _rewrite_identity),
             Rule("subtract-zero", "sub", _identity(0.0, (1,)), _rewrite_identity))
