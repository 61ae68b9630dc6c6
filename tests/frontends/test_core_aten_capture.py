"""Capture to functional Core ATen: in-place ops and ops recc has no converter for arrive decomposed,
the ops recc fuses stay whole, and a forward that mutates a buffer is refused with a clear message."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from recc.compiler.interpreter import interpret
from recc.compiler.ir import print_graph
from recc.frontends.torch_export import capture
from tests.conftest import FP32_ATOL, max_abs_error


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        y.add_(0.5)
        y.relu_()
        y[:, 0] = 2.0          # index_put_ on a view
        z = y.repeat_interleave(2, dim=1)
        return z.sum(1, keepdim=True) + y.mul_(y).mean(1, keepdim=True)


def test_in_place_and_undecomposed_ops_capture_and_match_eager():
    torch.manual_seed(0)
    module = InPlace().eval()
    graph = capture(module, (torch.randn(4, 4),))
    text = print_graph(graph)
    assert "dense" in text or "matmul" in text  # linear stays whole for the dense fusions
    for b in (1, 5):
        x = torch.randn(b, 4)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL


class Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return x * 2


def test_buffer_mutated_in_forward_is_refused():
    with pytest.raises(ValueError, match="mutates seen"):
        capture(Counter(), (torch.randn(3, 2),))
