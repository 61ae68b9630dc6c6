"""fold-constants: ops of constants become constants, x*1 and x+0 become x (rule counts asserted), numbers
equal eager (fp32 max abs error <= 1e-5), guards (too large, 0-d, graph outputs) leave the graph alone,
idempotence."""

from __future__ import annotations

import numpy as np
import torch
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, print_graph, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.fold_constants import MAX_ELEMENTS, FoldConstants
from torch import nn

from tests.conftest import FP32_ATOL, max_abs_error


class Normalize(nn.Module):
    """BatchNorm's statistics used by hand: (x - mean) / sqrt(var + eps) * 1, a weight scaled in forward()."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("mean", torch.randn(5, generator=generator))
        self.register_buffer("var", torch.rand(5, generator=generator) + 0.5)
        self.w = nn.Parameter(torch.randn(5, 5, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean) / torch.sqrt(self.var + 1e-5) * 1.0
        return torch.relu(y @ (self.w * 2.0) + 0.0)


def test_folds_constant_expressions_and_identities() -> None:
    module = Normalize().eval()
    graph = capture(module, (torch.randn(4, 5),))
    stats = FoldConstants().run(graph, PassContext())
    verify(graph)
    assert stats.rewrites == {"evaluate-constant": 3, "multiply-by-one": 1, "add-zero": 1}
    assert graph.op_histogram() == {"div": 1, "matmul": 1, "relu": 1, "sub": 1}
    assert stats.rejects == {}
    for batch in (1, 9):
        x = torch.randn(batch, 5)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL
    assert FoldConstants().run(graph, PassContext()).rewrites == {}


def _unchanged(g: Graph, rejects: dict[str, int]) -> None:
    before = print_graph(g)
    stats = FoldConstants().run(g, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == rejects
    assert print_graph(g) == before


def test_does_not_materialize_a_broadcast_beyond_the_bound() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 1), "float32"))
    big = g.add_node("expand", [g.add_param("c", np.ones((1, 1), np.float32))], {"shape": (MAX_ELEMENTS + 1, 1)})
    g.outputs = [g.add_node("add", [g.add_node("slice", [big.output], {"axis": 0, "start": 0, "end": 1}).output,
                                    x]).output]
    _unchanged(g, {"evaluate-constant: result is too large to materialize": 1})


def test_leaves_a_0d_result_alone() -> None:  # parameters are stored at least 1-d
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 3), "float32"))
    scalar = g.add_node("reshape", [g.add_param("c", np.full(1, 2.0, np.float32))], {"shape": ()}).output
    g.outputs = [g.add_node("mul", [x, scalar]).output]
    _unchanged(g, {"evaluate-constant: result is 0-d": 1})


def test_keeps_graph_outputs_and_broadcasting_identities() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 1), "float32"))
    constant = g.add_node("neg", [g.add_param("c", np.ones(3, np.float32))]).output
    grown = g.add_node("mul", [x, g.add_param("one", np.ones(3, np.float32))]).output  # [B, 1] * [3] grows x
    g.outputs = [constant, grown]
    _unchanged(g, {})
