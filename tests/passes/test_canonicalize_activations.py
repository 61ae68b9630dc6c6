"""canonicalize-activations: each hand-written activation becomes the named op (rule asserted), numbers
equal eager (fp32 max abs error <= 1e-5 on inputs of magnitude ~3), one negative test per guard (graph
unchanged, reason asserted: a near miss, such as a mistyped constant in gelu, is reported), idempotence."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, print_graph, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.canonicalize_activations import CanonicalizeActivations
from torch import nn

from tests.conftest import FP32_ATOL, max_abs_error


class Activation(nn.Module):
    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.spelled = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spelled(x)


SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
# name -> (spelling, rule, resulting op, its attrs)
CASES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str, str, dict]] = {
    "clamp(min=0)": (lambda x: torch.clamp(x, min=0), "clamp-as-relu", "relu", {}),
    "clamp_min(0.0)": (lambda x: torch.clamp_min(x, 0.0), "clamp-as-relu", "relu", {}),
    "maximum(x, 0)": (lambda x: torch.maximum(x, torch.zeros(())), "maximum-as-activation", "relu", {}),
    "maximum(zeros_like, x)": (lambda x: torch.maximum(torch.zeros_like(x), x), "maximum-as-activation", "relu", {}),
    "where(x <= 0, 0, x)": (lambda x: torch.where(x <= 0, 0.0, x), "where-as-activation", "relu", {}),
    "threshold(x, 0, 0)": (lambda x: F.threshold(x, 0.0, 0.0), "where-as-activation", "relu", {}),
    "where(x > 0, x, 0.2 x)": (lambda x: torch.where(x > 0, x, 0.2 * x), "where-as-activation", "leaky_relu",
                               {"alpha": pytest.approx(0.2)}),
    "maximum(x, 0.3 x)": (lambda x: torch.maximum(0.3 * x, x), "maximum-as-activation", "leaky_relu",
                          {"alpha": pytest.approx(0.3)}),
    "1 / (1 + exp(-x))": (lambda x: 1 / (1 + torch.exp(-x)), "expression-as-sigmoid", "sigmoid", {}),
    "reciprocal(exp(-x) + 1)": (lambda x: torch.reciprocal(torch.exp(-x) + 1), "expression-as-sigmoid",
                                "sigmoid", {}),
    "x * sigmoid(x)": (lambda x: x * torch.sigmoid(x), "expression-as-silu", "silu", {}),
    "x / (1 + exp(-x))": (lambda x: x / (1 + torch.exp(-x)), "expression-as-silu", "silu", {}),
    "0.5 x (1 + erf(x / sqrt 2))": (lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), "expression-as-gelu",
                                    "gelu", {"approximate": "none"}),
    "x (1 + erf(x * 0.70710678)) / 2": (lambda x: x * (1 + torch.erf(x * 0.70710678)) / 2, "expression-as-gelu",
                                        "gelu", {"approximate": "none"}),
    "tanh gelu": (lambda x: 0.5 * x * (1 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))),
                  "expression-as-gelu_tanh", "gelu", {"approximate": "tanh"}),
    "(e^x - e^-x) / (e^x + e^-x)": (lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
                                    "expression-as-tanh", "tanh", {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fires_and_keeps_numbers(name: str) -> None:
    forward, rule, op, attrs = CASES[name]
    module = Activation(forward)
    graph = capture(module, (torch.randn(4, 5),))
    stats = CanonicalizeActivations().run(graph, PassContext())
    graph.remove_dead()
    verify(graph)
    assert set(stats.rewrites) == {rule}  # 1 / t arrives as reciprocal(t) * 1: two sigmoid rewrites
    assert [n.op for n in graph.nodes if n.op not in ("expand", "reshape")] == [op]
    assert {k: graph.nodes[-1].attrs[k] for k in attrs} == attrs
    for batch in (1, 9):
        x = torch.randn(batch, 5) * 3
        assert max_abs_error(interpret(graph, [x.numpy()])[0], module(x)) <= FP32_ATOL
    assert CanonicalizeActivations().run(graph, PassContext()).rewrites == {}


def _graph() -> tuple[Graph, object]:
    g = Graph()
    return g, g.add_input("x", TensorType((sym("batch"), 5), "float32"))


def _const(g: Graph, value: float) -> object:
    return g.add_param("c", np.full(1, value, np.float32))


def _unchanged(g: Graph, rejects: dict[str, int]) -> None:
    before = print_graph(g)
    stats = CanonicalizeActivations().run(g, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == rejects
    assert print_graph(g) == before


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][2] in ("relu", "leaky_relu")))
def test_piecewise_linear_rewrites_keep_nan_and_inf(name: str) -> None:
    module = Activation(CASES[name][0])
    graph = capture(module, (torch.randn(4, 5),))
    CanonicalizeActivations().run(graph, PassContext())
    graph.remove_dead()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(7))
    x[0, 1], x[3, 0], x[6, 4], x[2, 2] = float("nan"), float("inf"), float("-inf"), -0.0
    torch.testing.assert_close(torch.from_numpy(interpret(graph, [x.numpy()])[0]), module(x), equal_nan=True)


def test_declines_where_that_drops_nan() -> None:  # where(x > 0, x, 0): NaN -> 0, relu keeps NaN
    module = Activation(lambda x: torch.where(x > 0, x, 0.0))
    graph = capture(module, (torch.randn(4, 5),))
    stats = CanonicalizeActivations().run(graph, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == {"where-as-activation: where turns NaN into 0, relu keeps it": 1}
    x = torch.tensor([[float("nan"), 1.0, -1.0, float("inf"), float("-inf")]])
    torch.testing.assert_close(torch.from_numpy(interpret(graph, [x.numpy()])[0]), module(x), equal_nan=True)


def test_declines_clamp_with_an_upper_bound() -> None:  # relu6 is not relu
    g, x = _graph()
    g.outputs = [g.add_node("clamp", [x], {"min": 0.0, "max": 6.0}).output]
    _unchanged(g, {"clamp-as-relu: clamp has an upper bound": 1})


def test_declines_clamp_with_a_nonzero_lower_bound() -> None:
    g, x = _graph()
    g.outputs = [g.add_node("clamp", [x], {"min": -1.0, "max": None}).output]
    _unchanged(g, {"clamp-as-relu: lower bound is not zero": 1})


def test_declines_where_with_a_nonzero_threshold() -> None:  # threshold(x, 0.5, 0)
    g, x = _graph()
    above = g.add_node("gt", [x, _const(g, 0.5)]).output
    g.outputs = [g.add_node("where", [above, x, _const(g, 0.0)]).output]
    _unchanged(g, {"where-as-activation: threshold is not zero": 1})


def test_declines_where_with_a_nonzero_fill() -> None:  # threshold(x, 0, -1)
    g, x = _graph()
    above = g.add_node("gt", [x, _const(g, 0.0)]).output
    g.outputs = [g.add_node("where", [above, x, _const(g, -1.0)]).output]
    _unchanged(g, {"where-as-activation: fill value is not zero": 1})


def test_declines_maximum_with_a_slope_of_one_or_more() -> None:  # max(x, 2x) is not leaky
    g, x = _graph()
    doubled = g.add_node("mul", [x, _const(g, 2.0)]).output
    g.outputs = [g.add_node("maximum", [x, doubled]).output]
    _unchanged(g, {"maximum-as-activation: slope is not below 1": 1})


def test_a_near_miss_constant_is_not_gelu() -> None:
    """0.0447 for 0.044715 in the tanh form: off by 8e-6 relative, more than the 1e-6 the match allows."""
    g, x = _graph()
    cube = g.add_node("pow", [x, _const(g, 3.0)]).output
    inner = g.add_node("add", [x, g.add_node("mul", [cube, _const(g, 0.0447)]).output]).output
    t = g.add_node("tanh", [g.add_node("mul", [inner, _const(g, SQRT_2_OVER_PI)]).output]).output
    half_x = g.add_node("mul", [x, _const(g, 0.5)]).output
    g.outputs = [g.add_node("mul", [half_x, g.add_node("add", [t, _const(g, 1.0)]).output]).output]
    _unchanged(g, {  # within 1e-2 of both gelus (they differ by ~1e-3), so a near miss of each
        "expression-as-gelu: expression is within 0.01 of gelu but not 1e-06 (a mistyped constant?)": 1,
        "expression-as-gelu_tanh: expression is within 0.01 of gelu_tanh but not 1e-06 (a mistyped constant?)": 1})


def test_a_sigmoid_with_a_wrong_constant_is_a_reported_near_miss() -> None:  # 1 / (1 + exp(-1.001 x))
    g, x = _graph()
    e = g.add_node("exp", [g.add_node("mul", [x, _const(g, -1.001)]).output]).output
    g.outputs = [g.add_node("reciprocal", [g.add_node("add", [e, _const(g, 1.0)]).output]).output]
    _unchanged(g, {"expression-as-sigmoid: expression is within 0.01 of sigmoid but not 1e-06 (a mistyped constant?)": 1})


def test_declines_maximum_with_a_nonzero_constant() -> None:  # max(x, 0.5) is not relu
    g, x = _graph()
    g.outputs = [g.add_node("maximum", [x, _const(g, 0.5)]).output]
    _unchanged(g, {"maximum-as-activation: the constant operand is not zero": 1})


def test_declines_maximum_with_a_slope_that_is_not_a_constant() -> None:  # max(x, y * x)
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), 5), "float32"))
    g.outputs = [g.add_node("maximum", [x, g.add_node("mul", [x, y]).output]).output]
    _unchanged(g, {"maximum-as-activation: slope is not a scalar constant": 1})


def test_declines_where_with_a_threshold_that_is_not_a_constant() -> None:  # where(x > y, x, 0)
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), 5), "float32"))
    above = g.add_node("gt", [x, y]).output
    g.outputs = [g.add_node("where", [above, x, _const(g, 0.0)]).output]
    _unchanged(g, {"where-as-activation: threshold is not a scalar constant": 1})


def test_declines_where_that_keeps_another_value() -> None:  # where(x > 0, y, 0)
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), 5), "float32"))
    above = g.add_node("gt", [x, _const(g, 0.0)]).output
    g.outputs = [g.add_node("where", [above, y, _const(g, 0.0)]).output]
    _unchanged(g, {"where-as-activation: the kept branch is not the compared value": 1})


def test_declines_where_with_a_fill_that_is_no_multiple_of_x() -> None:  # where(x > 0, x, y)
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), 5), "float32"))
    above = g.add_node("gt", [x, _const(g, 0.0)]).output
    g.outputs = [g.add_node("where", [above, x, y]).output]
    _unchanged(g, {"where-as-activation: fill is neither a scalar nor a multiple of x": 1})


def test_an_expression_of_two_tensors_is_not_an_activation() -> None:  # x * sigmoid(y)
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), 5), "float32"))
    g.outputs = [g.add_node("mul", [x, g.add_node("sigmoid", [y]).output]).output]
    _unchanged(g, {})
