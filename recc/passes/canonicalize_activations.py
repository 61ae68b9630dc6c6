"""The many spellings of an activation -> the one op fuse-dense-activation folds into a dense:

    clamp(x, min=0) | maximum(x, 0) | where(x <= 0, 0, x) | threshold(x, 0, 0)  -> relu(x)
    (not where(x > 0, x, 0): it turns NaN into 0, relu keeps NaN)
    where(x > 0, x, a * x) | maximum(x, a * x)  (a < 1)                       -> leaky_relu(x, alpha=a)
    any smooth expression of one tensor x and scalar constants (exp, erf, tanh, sigmoid, reciprocal,
    + - * /, pow) that equals sigmoid / silu / tanh / gelu / gelu(tanh) on a probe grid
        e.g. 1 / (1 + exp(-x)), x * sigmoid(x), 0.5 * x * (1 + erf(x / sqrt(2))),
             0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))                 -> that op

Why: a model may write an activation by hand; only the named op runs in the dense kernel's epilogue
(one fused kernel, no [M, N] round trip), and the hand-written chain costs a kernel per step.
Legal: the piecewise-linear forms are matched structurally, their constants checked exactly (the
threshold and fill must be zero, the leaky slope below 1, so max(x, a x) is the leaky branch).
The smooth forms are matched semantically, which no syntactic matcher can do for the many orderings of
the same arithmetic: the expression (at most MAX_REGION nodes, one non-constant leaf, every other leaf
a scalar constant, at least one transcendental op) is evaluated in float64 on 401 points in [-8, 8]
and must agree with the named activation within 1e-6 relative (constants rounded to fp32 move it by
~1e-9; a mistyped 0.0447 for 0.044715 moves it by 8e-6 and fails; the erf and tanh gelus differ by
~1e-3, so they are told apart). Values outside the
probes could in principle differ (an expression crafted to differ only beyond |x| = 8); analytic
compositions of these ops with scalar constants that agree at 401 points do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recc.compiler.interpreter import constant_value, run_node
from recc.compiler.ir import Graph, Node, Value, constant_scalar, is_zero, producer_op
from recc.compiler.ir.types import is_float
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule

MAX_REGION = 16
SMOOTH_OPS = ("add", "sub", "mul", "div", "neg", "reciprocal", "exp", "erf", "tanh", "sigmoid", "pow", "sqrt")
TRANSCENDENTAL = ("exp", "erf", "tanh", "sigmoid")
PROBES = np.linspace(-8.0, 8.0, 401)
MATCH_ERROR = 1e-6  # relative: |got - want| <= MATCH_ERROR * (1 + |want|) at every probe
NEAR_MISS_ERROR = 1e-2  # closer than this but not a match: reported as a near miss
SLOPE_NOT_BELOW_ONE = Reject("slope is not below 1")
_erf = np.vectorize(math.erf, otypes=[np.float64])

# target name -> (op, attrs, float64 reference)
SMOOTH_TARGETS: dict[str, tuple[str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]] = {
    "sigmoid": ("sigmoid", {}, lambda x: 1 / (1 + np.exp(-x))),
    "silu": ("silu", {}, lambda x: x / (1 + np.exp(-x))),
    "tanh": ("tanh", {}, np.tanh),
    "gelu": ("gelu", {"approximate": "none"}, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu_tanh": ("gelu", {"approximate": "tanh"},
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
}


def _same_shape(node: Node, x: Value) -> bool:
    return node.output.type == x.type and is_float(x.type.dtype)


def _relu(graph: Graph, node: Node, x: Value) -> Match:
    return Match([node], {"x": x, "op": "relu", "attrs": {}})


def _leaky(graph: Graph, node: Node, x: Value, slope: Value) -> Match | Reject | None:
    """node == leaky_relu(x, a) if `slope` is mul(x, a) with a scalar a."""
    mul = producer_op(slope, "mul")
    if mul is None or x not in mul.inputs:
        return None
    a = constant_scalar(graph, mul.inputs[1] if mul.inputs[0] is x else mul.inputs[0], constant_value)
    if a is None:
        return Reject("slope is not a scalar constant")
    if node.op == "maximum" and a >= 1:
        return SLOPE_NOT_BELOW_ONE
    return Match([node], {"x": x, "op": "leaky_relu", "attrs": {"alpha": a}})


def _match_clamp(graph: Graph, node: Node) -> Match | Reject | None:
    low, high = node.attrs.get("min"), node.attrs.get("max")
    if low is None or float(low) != 0.0:
        return Reject("lower bound is not zero")
    if high is not None:
        return Reject("clamp has an upper bound")
    return _relu(graph, node, node.inputs[0])


def _match_maximum(graph: Graph, node: Node) -> Match | Reject | None:
    miss: Reject | None = None  # a near miss is reported only if neither operand order matches
    for x, other in (node.inputs, node.inputs[::-1]):
        if not _same_shape(node, x):
            continue
        zero = constant_value(graph, other, max_elements=1 << 16)
        if (zero is not None and zero.size and not zero.any()) or is_zero(graph, other):
            return _relu(graph, node, x)
        leaky = _leaky(graph, node, x, other)
        if isinstance(leaky, Match) or leaky == SLOPE_NOT_BELOW_ONE:
            return leaky
        miss = miss or (Reject("the constant operand is not zero") if zero is not None else leaky)
    return miss


def _condition(graph: Graph, cond: Value) -> tuple[Value, float, bool] | Reject | None:
    """(x, t, sign) if cond says x > t (sign True) or x < t (sign False), with a scalar constant t."""
    compare = producer_op(cond, ("gt", "ge", "lt", "le"))
    if compare is None:
        return None
    for i in (0, 1):
        t = constant_scalar(graph, compare.inputs[1 - i], constant_value)
        if t is not None:
            greater = compare.op in ("gt", "ge")
            return compare.inputs[i], t, greater if i == 0 else not greater
    return Reject("threshold is not a scalar constant")


def _match_where(graph: Graph, node: Node) -> Match | Reject | None:
    found = _condition(graph, node.inputs[0])
    if found is None or isinstance(found, Reject):
        return found
    x, threshold, positive = found
    kept, fill = (node.inputs[1], node.inputs[2]) if positive else (node.inputs[2], node.inputs[1])
    if kept is not x or not _same_shape(node, x):
        return Reject("the kept branch is not the compared value")
    if threshold != 0.0:
        return Reject("threshold is not zero")
    fill_value = constant_scalar(graph, fill, constant_value)
    if fill_value is not None and fill_value != 0.0:
        return Reject("fill value is not zero")
    if fill_value is not None:  # relu keeps NaN: where(x > 0, x, 0) makes it 0, where(x <= 0, 0, x) keeps it
        return _relu(graph, node, x) if kept is node.inputs[2] else Reject("where turns NaN into 0, relu keeps it")
    return _leaky(graph, node, x, fill) or Reject("fill is neither a scalar nor a multiple of x")


# -- smooth activations, matched semantically ----------------------------------------------------------
def _region(graph: Graph, root: Node, x: Value) -> list[Node] | None:
    """The smooth nodes between `x` and `root` (topological order) if every other leaf is a scalar
    constant, else None."""
    order: list[Node] = []
    visited: set[int] = set()

    def visit(node: Node) -> bool:  # post-order: producers before users
        if id(node) in visited:
            return True
        if node.op not in SMOOTH_OPS or len(visited) >= MAX_REGION:
            return False
        visited.add(id(node))
        for v in node.inputs:
            if v is x or constant_scalar(graph, v, constant_value) is not None:
                continue
            if v.producer is None or not visit(v.producer):
                return False
        order.append(node)
        return True

    return order if visit(root) else None


def _candidates(root: Node) -> list[Value]:
    """Values the expression at `root` could be a function of: the non-constant inputs of its smooth
    cone, nearest first."""
    seen: list[Value] = []
    frontier = [root]
    while frontier and len(seen) < 2 * MAX_REGION:
        node = frontier.pop(0)
        for v in node.inputs:
            if v.kind != "param" and all(v is not s for s in seen):
                seen.append(v)
                if v.producer is not None and v.producer.op in SMOOTH_OPS:
                    frontier.append(v.producer)
    return seen


def _evaluate(graph: Graph, region: list[Node], x: Value) -> np.ndarray | None:
    values: dict[int, np.ndarray] = {id(x): PROBES}
    with np.errstate(all="ignore"):
        for node in region:
            args = [values[id(v)] if id(v) in values else np.asarray(constant_value(graph, v), np.float64)
                    for v in node.inputs]
            values[id(node.output)] = run_node(node, args, {})[0]
    out = values[id(region[-1].output)]
    return out if out.shape == PROBES.shape else None


def _semantic_match(target: str) -> Callable[[Graph, Node], Match | Reject | None]:
    op, attrs, reference = SMOOTH_TARGETS[target]
    expected = reference(PROBES)

    def match(graph: Graph, root: Node) -> Match | Reject | None:
        if not is_float(root.output.type.dtype):
            return None
        miss = None
        for x in _candidates(root):
            region = _region(graph, root, x) if _same_shape(root, x) else None
            if region is None or len(region) < 2 or not any(n.op in TRANSCENDENTAL for n in region):
                continue
            got = _evaluate(graph, region, x)
            if got is None:
                continue
            if np.all(np.abs(got - expected) <= MATCH_ERROR * (1 + np.abs(expected))):
                return Match([root], {"x": x, "op": op, "attrs": attrs})
            if np.all(np.abs(got - expected) <= NEAR_MISS_ERROR * (1 + np.abs(expected))):
                miss = Reject(f"expression is within {NEAR_MISS_ERROR:g} of {target} but not {MATCH_ERROR:g} "
                              "(a mistyped constant?)")
        return miss
    return match


def _rewrite(b: Builder, node: Node, match: Match) -> Value:
    return b.op(match.data["op"], [match.data["x"]], match.data["attrs"], name=node.output.name)


class CanonicalizeActivations(RewritePass):
    name = "canonicalize-activations"
    summary = "turn hand-written activations (clamp, maximum, where, exp/erf/tanh formulas) into the named op"
    rules = (Rule("clamp-as-relu", "clamp", _match_clamp, _rewrite),
             Rule("maximum-as-activation", "maximum", _match_maximum, _rewrite),
             Rule("where-as-activation", "where", _match_where, _rewrite),
             *(Rule(f"expression-as-{name}", SMOOTH_OPS, _semantic_match(name), _rewrite) for name in SMOOTH_TARGETS))
