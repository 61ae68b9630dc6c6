"""cse: repeated (op, inputs, attributes) computed once (counts asserted), commutative operands and equal
small constants count as the same, numbers equal eager (fp32 max abs error <= 1e-5), graph outputs and
different attributes are left alone, idempotence."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, print_graph, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.cse import CSE
from torch import nn

from tests.conftest import FP32_ATOL, max_abs_error


class Repeated(nn.Module):
    """silu written with the layer computed twice, and x > 0 tested twice."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(x) * torch.sigmoid(self.layer(x))
        return torch.where(h > 0, h, 0.0) + torch.where(h > 0, h, 0.0)


def test_merges_repeated_nodes_and_keeps_numbers() -> None:
    torch.manual_seed(0)
    module = Repeated().eval()
    graph = capture(module, (torch.randn(4, 5),))
    stats = CSE().run(graph, PassContext())
    verify(graph)
    assert stats.rewrites == {"duplicate-node": 3}  # the second dense, gt and where
    assert graph.op_histogram() == {"add": 1, "dense": 1, "gt": 1, "mul": 1, "sigmoid": 1, "where": 1}
    for batch in (1, 9):
        x = torch.randn(batch, 5)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL
    assert CSE().run(graph, PassContext()).rewrites == {}


def test_commutative_operands_and_equal_constants_are_the_same() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 3), "float32"))
    a = g.add_node("add", [x, g.add_param("one", np.ones(1, np.float32))]).output
    b = g.add_node("add", [g.add_param("one_again", np.ones(1, np.float32)), x]).output
    c = g.add_node("sub", [x, g.add_param("one_more", np.ones(1, np.float32))]).output
    d = g.add_node("sub", [g.add_param("and_one", np.ones(1, np.float32)), x]).output  # not commutative
    g.outputs = [g.add_node("concat", [a, b, c, d], {"axis": 1}).output]
    stats = CSE().run(g, PassContext())
    assert stats.rewrites == {"duplicate-node": 1}
    assert g.op_histogram() == {"add": 1, "concat": 1, "sub": 2}


def test_leaves_graph_outputs_and_different_attributes_alone() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 3), "float32"))
    first = g.add_node("relu", [x]).output
    second = g.add_node("relu", [x]).output
    sums = [g.add_node("sum", [x], {"axes": (axis,)}).output for axis in (0, 1)]
    g.outputs = [first, second, *sums]
    before = print_graph(g)
    assert CSE().run(g, PassContext()).rewrites == {}
    assert print_graph(g) == before


def test_merges_the_same_linear_called_twice() -> None:
    layer = nn.Linear(5, 4).eval()
    graph = capture(nn.Sequential(), (torch.randn(2, 5),)) if False else None
    module = _TwoCalls(layer).eval()
    graph = capture(module, (torch.randn(4, 5),))
    assert CSE().run(graph, PassContext()).rewrites == {"duplicate-node": 2}  # the dense and its relu
    assert graph.op_histogram() == {"dense": 1, "relu": 1, "sub": 1}
    x = torch.randn(3, 5)
    with torch.no_grad():
        expected = module(x)
    assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL


class _TwoCalls(nn.Module):
    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.layer(x)) - F.relu(self.layer(x))
