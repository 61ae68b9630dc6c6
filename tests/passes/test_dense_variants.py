"""The variants suite: one dense + bias + activation layer written in many PyTorch spellings. Each is
captured, optimized by the full default pipeline, and must end as exactly one `dense` per layer (the
activation in its epilogue) and nothing else, equal to eager through the reference interpreter
(fp32, max abs error <= 1e-5 on outputs of magnitude ~1; BatchNorm folding moves a few ulps). Three are
also built with TVM to show the fused kernel runs them. bench/dense_variants_ort.py runs the same
spellings through ONNX Runtime's optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from recc.compiler.interpreter import interpret
from recc.frontends.torch_export import capture
from torch import nn

import recc
from recc.api import optimize
from tests.conftest import FP32_ATOL, max_abs_error

K, H, N = 12, 16, 8


class Spelling(nn.Module):
    """Weights w1 [H, K], b1 [H] (and w2 [N, H], b2 [N] for two layers), w1_kn = w1 stored [K, H], an eval
    BatchNorm over H; `forward` is the spelling under test."""

    def __init__(self, forward: Callable[[Spelling, torch.Tensor], torch.Tensor], seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(H, K, generator=generator) / math.sqrt(K))
        self.b1 = nn.Parameter(torch.randn(H, generator=generator) * 0.1)
        self.w1_kn = nn.Parameter(self.w1.detach().t().contiguous())
        self.w2 = nn.Parameter(torch.randn(N, H, generator=generator) / math.sqrt(H))
        self.b2 = nn.Parameter(torch.randn(N, generator=generator) * 0.1)
        self.bn = nn.BatchNorm1d(H)
        self.bn.running_mean.copy_(torch.randn(H, generator=generator) * 0.1)
        self.bn.running_var.copy_(torch.rand(H, generator=generator) + 0.5)
        self.bn.weight.data.copy_(torch.rand(H, generator=generator) + 0.5)
        self.bn.bias.data.copy_(torch.randn(H, generator=generator) * 0.1)
        self.spelled = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spelled(self, x)


def _linear(m: Spelling, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, m.w1, m.b1)


def _where_relu(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y <= 0, 0.0, y)  # relu with NaN kept (where(y > 0, y, 0) turns NaN into 0: not relu)


def _sigmoid_by_hand(y: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-y))


def _silu_by_hand(y: torch.Tensor) -> torch.Tensor:
    return y * torch.sigmoid(y)


def _two_layers_addmm(m: Spelling, x: torch.Tensor) -> torch.Tensor:
    h = torch.clamp(torch.addmm(m.b1, x, m.w1.t()), min=0)
    return _sigmoid_by_hand(h @ m.w2.T + m.b2)


def _two_layers_bn(m: Spelling, x: torch.Tensor) -> torch.Tensor:
    h = _where_relu(m.bn(x @ m.w1_kn + m.b1))
    return _silu_by_hand(F.linear(h, m.w2) + m.b2)


def _gelu_erf(y: torch.Tensor) -> torch.Tensor:
    return 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))


def _gelu_tanh(y: torch.Tensor) -> torch.Tensor:
    return 0.5 * y * (1 + torch.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * torch.pow(y, 3))))


# name -> (forward, layers, activation(s) the dense ops must end with)
SPELLINGS: dict[str, tuple[Callable[[Spelling, torch.Tensor], torch.Tensor], int, str]] = {
    "F.linear + relu": (lambda m, x: torch.relu(_linear(m, x)), 1, "relu"),
    "x @ W.T + b, relu": (lambda m, x: torch.relu(x @ m.w1.T + m.b1), 1, "relu"),
    "addmm(b, x, W.t()), relu": (lambda m, x: torch.relu(torch.addmm(m.b1, x, m.w1.t())), 1, "relu"),
    "addmm beta=0.5 alpha=2, relu": (
        lambda m, x: torch.relu(torch.addmm(m.b1, x, m.w1.t(), beta=0.5, alpha=2.0)), 1, "relu"),
    "matmul(x, W.t()) + b, tanh": (lambda m, x: torch.tanh(torch.matmul(x, m.w1.t()) + m.b1), 1, "tanh"),
    "b + x @ W.T (bias left), relu": (lambda m, x: torch.relu(m.b1 + x @ m.w1.T), 1, "relu"),
    "x @ W_kn + b (W stored [K, N]), relu": (lambda m, x: torch.relu(x @ m.w1_kn + m.b1), 1, "relu"),
    "x @ W.permute(1, 0) + b, relu": (lambda m, x: torch.relu(x @ m.w1.permute(1, 0) + m.b1), 1, "relu"),
    "x @ W.transpose(-1, -2) + b, relu": (lambda m, x: torch.relu(x @ m.w1.transpose(-1, -2) + m.b1), 1, "relu"),
    "x @ W.T + b.view(1, N) (2-D bias), relu": (lambda m, x: torch.relu(x @ m.w1.T + m.b1.view(1, H)), 1, "relu"),
    "F.linear(x, W) + b (bias added later), relu": (lambda m, x: torch.relu(F.linear(x, m.w1) + m.b1), 1, "relu"),
    "(x @ W.T) * 0.5 + b (scaled), relu": (lambda m, x: torch.relu((x @ m.w1.T) * 0.5 + m.b1), 1, "relu"),
    "(2 * x) @ W.T + b (input scaled), relu": (lambda m, x: torch.relu((2 * x) @ m.w1.T + m.b1), 1, "relu"),
    "linear -> BatchNorm1d (eval) -> relu": (lambda m, x: torch.relu(m.bn(_linear(m, x))), 1, "relu"),
    "clamp(min=0)": (lambda m, x: torch.clamp(_linear(m, x), min=0), 1, "relu"),
    "maximum(y, 0)": (lambda m, x: torch.maximum(_linear(m, x), torch.zeros(())), 1, "relu"),
    "where(y <= 0, 0, y)": (lambda m, x: _where_relu(_linear(m, x)), 1, "relu"),
    "threshold(y, 0, 0)": (lambda m, x: F.threshold(_linear(m, x), 0.0, 0.0), 1, "relu"),
    "1 / (1 + exp(-y))": (lambda m, x: _sigmoid_by_hand(_linear(m, x)), 1, "sigmoid"),
    "y * sigmoid(y)": (lambda m, x: _silu_by_hand(_linear(m, x)), 1, "silu"),
    "gelu, erf form by hand": (lambda m, x: _gelu_erf(_linear(m, x)), 1, "gelu"),
    "gelu, tanh form by hand": (lambda m, x: _gelu_tanh(_linear(m, x)), 1, "gelu_tanh"),
    "leaky: where(y > 0, y, 0.1 * y)": (
        lambda m, x: torch.where(_linear(m, x) > 0, _linear(m, x), 0.1 * _linear(m, x)), 1, "leaky_relu"),
    "leaky: maximum(y, 0.1 * y)": (
        lambda m, x: torch.maximum(_linear(m, x), 0.1 * _linear(m, x)), 1, "leaky_relu"),
    "3-D input: x [B, L, K] @ W.T + b, relu": (lambda m, x: torch.relu(x @ m.w1.T + m.b1), 1, "relu"),
    "two layers: addmm + clamp, then x @ W.T + b + sigmoid by hand": (_two_layers_addmm, 2, "relu,sigmoid"),
    "two layers: x @ W_kn + b, BN, where; then F.linear + b, silu by hand": (_two_layers_bn, 2, "relu,silu"),
}
THREE_D = "3-D input: x [B, L, K] @ W.T + b, relu"


def _inputs(name: str, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 3, K) if name == THREE_D else (batch, K)
    return torch.randn(*shape, generator=generator)


def build(name: str) -> Spelling:
    return Spelling(SPELLINGS[name][0]).eval()


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_spelling_ends_as_one_fused_dense_per_layer(name: str) -> None:
    _, layers, activations = SPELLINGS[name]
    module = build(name)
    graph = capture(module, (_inputs(name, 4, 0),))
    optimize(graph)
    assert graph.op_histogram() == {"dense": layers}
    assert ",".join(n.attrs["activation"] for n in graph.nodes) == activations
    for batch in (1, 9):
        x = _inputs(name, batch, 100 + batch)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(interpret(graph, [x.numpy()])[0], expected) <= FP32_ATOL


def test_at_least_fourteen_distinct_spellings() -> None:
    """Distinct as the optimizer sees them: the captured graphs (ops and their order) differ."""
    captured = set()
    for name in SPELLINGS:
        graph = capture(build(name), (_inputs(name, 4, 0),))
        captured.add(tuple((n.op, tuple(sorted(n.attrs))) for n in graph.nodes))
    assert len(captured) >= 14, f"only {len(captured)} distinct captured graphs"


@pytest.mark.parametrize("name", ["addmm beta=0.5 alpha=2, relu", "linear -> BatchNorm1d (eval) -> relu",
                                  "two layers: addmm + clamp, then x @ W.T + b + sigmoid by hand"])
def test_compiled_kernel_runs_the_spelling(name: str) -> None:
    module = build(name)
    compiled = recc.compile(module, (_inputs(name, 4, 0),), tuning_db=None)
    assert compiled.report["final_ops"] == {"dense": SPELLINGS[name][1]}
    for batch in (1, 33):
        x = _inputs(name, batch, 200 + batch)
        with torch.no_grad():
            expected = module(x)
        assert max_abs_error(compiled(x), expected) <= FP32_ATOL
