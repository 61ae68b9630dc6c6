"""fuse-dense-activation: fires on each activation, declines with a reason, idempotent, numerics kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.fuse_dense_activation import FuseDenseActivation
from tests.conftest import FP32_ATOL, max_abs_error
from tests.passes.graphs import Small, assert_same_function, run

ACTIVATIONS = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "silu": nn.SiLU(),
               "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "leaky_relu": nn.LeakyReLU(0.2)}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_fuses_each_activation_and_keeps_numbers(name: str) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 7), ACTIVATIONS[name]).eval()
    graph = capture(module, (torch.randn(4, 5),))
    stats = FuseDenseActivation().run(graph, PassContext())
    verify(graph)
    assert stats.rewrites == {"activation-into-dense": 1}
    assert graph.op_histogram() == {"dense": 1}
    assert graph.nodes[0].attrs["activation"] == name
    for batch in (1, 9):
        x = torch.randn(batch, 5)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], module(x)) <= FP32_ATOL


def _dense_relu_graph(second_user: bool) -> Graph:
    g = Small()
    d = g.op("dense", g.input("x", 3), g.param("w", np.ones((2, 3), np.float32)), activation="none")
    r = g.op("relu", d)
    return g.returns(r, d) if second_user else g.returns(r)


def test_fuses_a_small_graph_and_keeps_its_function() -> None:
    g = _dense_relu_graph(second_user=False)
    before = g.clone()
    assert run(g, FuseDenseActivation()).rewrites == {"activation-into-dense": 1}
    assert g.op_histogram() == {"dense": 1}
    assert_same_function(before, g)


def test_declines_when_dense_output_has_another_user() -> None:
    g = _dense_relu_graph(second_user=True)
    stats = FuseDenseActivation().run(g, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == {"activation-into-dense: dense output has another user": 1}
    assert g.op_histogram() == {"dense": 1, "relu": 1}


def test_declines_second_activation_and_is_idempotent() -> None:
    g = _dense_relu_graph(second_user=False)
    r = g.outputs[0]
    g.outputs = [g.add_node("sigmoid", [r]).output]
    first = FuseDenseActivation().run(g, PassContext())
    assert first.rewrites == {"activation-into-dense": 1}
    assert first.rejects == {"activation-into-dense: dense already has an activation": 1}
    second = FuseDenseActivation().run(g, PassContext())
    assert second.rewrites == {}
    assert g.op_histogram() == {"dense": 1, "sigmoid": 1}
    assert g.nodes[0].origin.startswith("rule activation-into-dense")
