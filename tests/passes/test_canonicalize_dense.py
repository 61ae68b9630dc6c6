"""canonicalize-dense: each spelling of a dense layer becomes one dense (rewrite counts asserted), numbers
equal eager (fp32 max abs error <= 1e-5 on outputs of magnitude ~1), one negative test per legality guard
(graph unchanged, reason asserted), idempotence. Square weights where a transposition bug would hide."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, print_graph, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.canonicalize_dense import CanonicalizeDense
from torch import nn

from tests.conftest import FP32_ATOL, max_abs_error

K = N = 6  # square: a missing or extra transpose still type-checks, only the numbers catch it


class Layer(nn.Module):
    def __init__(self, forward: Callable[[Layer, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(N, K, generator=generator) / K ** 0.5)
        self.b = nn.Parameter(torch.randn(N, generator=generator))
        self.bn = nn.BatchNorm1d(N)
        self.bn.running_mean.copy_(torch.randn(N, generator=generator))
        self.bn.running_var.copy_(torch.rand(N, generator=generator) + 0.5)
        self.bn.weight.data.copy_(torch.randn(N, generator=generator))
        self.bn.bias.data.copy_(torch.randn(N, generator=generator))
        self.spelled = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spelled(self, x)


CASES = {
    "x @ W.T + b": (lambda m, x: x @ m.w.T + m.b, {"matmul-transposed-weight": 1, "bias-into-dense": 1}),
    "b + x @ W.t()": (lambda m, x: m.b + x @ m.w.t(), {"matmul-transposed-weight": 1, "bias-into-dense": 1}),
    "x @ W (stored [K, N]) + b[None]": (lambda m, x: x @ m.w + m.b[None, :],
                                        {"matmul-constant-weight": 1, "bias-into-dense": 1}),
    "addmm beta=2 alpha=0.5": (lambda m, x: torch.addmm(m.b, x, m.w.t(), beta=2.0, alpha=0.5),
                               {"matmul-transposed-weight": 1, "scale-into-dense": 1, "bias-into-dense": 1}),
    "linear(no bias) + b - 1": (lambda m, x: F.linear(x, m.w) + m.b - 1.0, {"bias-into-dense": 2}),
    "(x / 4) @ W.T * 3": (lambda m, x: ((x / 4) @ m.w.T) * 3, {"matmul-transposed-weight": 1,
                                                               "input-scale-into-dense": 1, "scale-into-dense": 1}),
    "linear -> BatchNorm1d": (lambda m, x: m.bn(F.linear(x, m.w, m.b)),
                              {"bias-into-dense": 2, "scale-into-dense": 2}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fires_and_keeps_numbers(name: str) -> None:
    forward, rewrites = CASES[name]
    module = Layer(forward).eval()
    graph = capture(module, (torch.randn(4, K),))
    stats = CanonicalizeDense().run(graph, PassContext())
    verify(graph)
    assert stats.rewrites == rewrites
    assert stats.rejects == {}
    assert graph.op_histogram() == {"dense": 1}
    assert graph.nodes[0].origin.startswith("rule ")
    for batch in (1, 9):
        x = torch.randn(batch, K)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL
    again = CanonicalizeDense().run(graph, PassContext())
    assert again.rewrites == {} and graph.op_histogram() == {"dense": 1}


def _graph(batch: object = None, x_dtype: str = "float32") -> tuple[Graph, object]:
    g = Graph()
    x = g.add_input("x", TensorType((batch if batch is not None else sym("batch"), K), x_dtype))
    return g, x


def _unchanged(g: Graph, reason: str) -> None:
    before = print_graph(g)
    stats = CanonicalizeDense().run(g, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == {reason: 1}
    assert print_graph(g) == before


def test_identity_permutation_on_a_square_weight_is_not_a_transpose() -> None:
    g, x = _graph()
    w = np.random.default_rng(0).standard_normal((K, N)).astype(np.float32)
    kept = g.add_node("permute", [g.add_param("w", w)], {"perm": (0, 1)}).output
    g.outputs = [g.add_node("matmul", [x, kept]).output]
    stats = CanonicalizeDense().run(g, PassContext())
    assert stats.rewrites == {"matmul-constant-weight": 1}
    dense = g.nodes[0]
    assert dense.op == "dense"
    np.testing.assert_array_equal(g.param_array(dense.inputs[1]), w.T)
    xs = np.random.default_rng(1).standard_normal((3, K)).astype(np.float32)
    assert max_abs_error(interpret(g, [xs])[0], xs @ w) <= FP32_ATOL


def test_declines_when_dense_output_has_another_user() -> None:
    g, x = _graph()
    d = g.add_node("dense", [x, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "none"}).output
    g.outputs = [g.add_node("add", [d, g.add_param("b", np.ones(N, np.float32))]).output, d]
    _unchanged(g, "bias-into-dense: dense output has another user")


def test_declines_bias_that_does_not_broadcast_on_the_last_axis() -> None:
    g, x = _graph(batch=3)
    d = g.add_node("dense", [x, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "none"}).output
    g.outputs = [g.add_node("add", [d, g.add_param("b", np.ones((3, 1), np.float32))]).output]
    _unchanged(g, "bias-into-dense: bias does not broadcast on the last axis")


def test_declines_bias_that_is_not_a_constant() -> None:
    g, x = _graph()
    y = g.add_input("y", TensorType((sym("batch"), N), "float32"))
    d = g.add_node("dense", [x, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "none"}).output
    g.outputs = [g.add_node("add", [d, y]).output]
    _unchanged(g, "bias-into-dense: bias is not a constant")


def test_declines_a_weight_computed_from_inputs() -> None:
    g, x = _graph()
    w = g.add_input("w", TensorType((K, N), "float32"))
    g.outputs = [g.add_node("matmul", [x, w]).output]
    _unchanged(g, "matmul-constant-weight: weight is computed from inputs")


def test_declines_an_integer_matmul() -> None:
    g, x = _graph(x_dtype="int64")
    g.outputs = [g.add_node("matmul", [x, g.add_param("w", np.ones((K, N), np.int64))]).output]
    _unchanged(g, "matmul-constant-weight: matmul is not floating point")


def test_declines_a_weight_with_batch_dims() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, K), "float32"))
    g.outputs = [g.add_node("matmul", [x, g.add_param("w", np.ones((2, K, N), np.float32))]).output]
    _unchanged(g, "matmul-constant-weight: weight has batch dims")


def test_declines_a_bias_after_an_activation() -> None:
    g, x = _graph()
    d = g.add_node("dense", [x, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "relu"}).output
    g.outputs = [g.add_node("add", [d, g.add_param("b", np.ones(N, np.float32))]).output]
    _unchanged(g, "bias-into-dense: dense already has an activation")


def test_declines_a_divisor_with_a_zero() -> None:
    g, x = _graph()
    d = g.add_node("dense", [x, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "none"}).output
    g.outputs = [g.add_node("div", [d, g.add_param("s", np.arange(N, dtype=np.float32))]).output]
    _unchanged(g, "scale-into-dense: divisor has a zero")


def test_declines_an_input_scale_with_another_user() -> None:
    g, x = _graph()
    scaled = g.add_node("mul", [x, g.add_param("s", np.full(1, 2.0, np.float32))]).output
    d = g.add_node("dense", [scaled, g.add_param("w", np.ones((N, K), np.float32))], {"activation": "none"}).output
    g.outputs = [d, scaled]
    _unchanged(g, "input-scale-into-dense: scaled input has another user")
