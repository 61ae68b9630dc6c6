"""fuse-attention: DIN's attention unit becomes one target_attention op (reference interpreter and the TIR
kernel vs eager), declines with reasons, idempotent. fp32: max abs error <= 1e-5 (outputs are convex
combinations of keys of magnitude ~1)."""

from __future__ import annotations

import pytest
import torch
from recc.compiler.interpreter import interpret
from recc.compiler.ir import verify
from recc.compiler.pass_manager import PassContext
from recc.passes.pipeline import build_passes
from recc.frontends.torch_export import capture
from recc.passes.fuse_attention import FuseAttention
from torch import nn

import recc
from tests.conftest import FP32_ATOL, max_abs_error


class Attention(nn.Module):
    """keys [B, S, D], query [B, D], mask [B, S] -> DIN's masked attention pooling."""

    def __init__(self, dim: int = 4, widths: tuple[int, ...] = (6, 5), act: str = "sigmoid",
                 unit: str = "din", expose_scores: bool = False, masked: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        sizes = (4 * dim, *widths, 1)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append({"sigmoid": nn.Sigmoid(), "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2)}[act])
        self.mlp = nn.Sequential(*layers)
        self.unit, self.expose_scores, self.masked = unit, expose_scores, masked

    def forward(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor):
        q = query.unsqueeze(1).expand_as(keys)
        parts = [keys, q, keys - q, keys * q] if self.unit == "din" else [keys, q, keys + q, keys * q]
        scores = self.mlp(torch.cat(parts, dim=2)).squeeze(2)
        if self.masked:
            scores = scores + (mask - 1.0) * 1e9
        weights = torch.softmax(scores, dim=1)
        out = (weights.unsqueeze(2) * keys).sum(dim=1)
        return (out, scores) if self.expose_scores else out


def _inputs(batch: int, seed: int, seq: int = 7, dim: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, seq, generator=g) > 0.3).float()
    mask[:, 0] = 1.0  # at least one valid position, as DIN's inputs guarantee
    return torch.randn(batch, seq, dim, generator=g), torch.randn(batch, dim, generator=g), mask


def _run(module: nn.Module):
    """Capture, run the passes that precede fuse-attention in the pipeline, then fuse-attention."""
    graph = capture(module.eval(), _inputs(3, 0))
    for earlier in build_passes(("simplify-reshapes", "fuse-dense-activation")):
        earlier.run(graph, PassContext())
    return graph, FuseAttention().run(graph, PassContext())


@pytest.mark.parametrize("masked", [True, False])
def test_fuses_the_unit_and_keeps_numbers(masked: bool) -> None:
    module = Attention(masked=masked)
    graph, stats = _run(module)
    verify(graph)
    assert stats.rewrites == {"target-attention": 1}
    ops = graph.op_histogram()
    assert ops.get("target_attention") == 1 and not {"dense", "softmax", "concat", "sum"} & set(ops)
    node = next(n for n in graph.nodes if n.op == "target_attention")
    assert node.attrs == {"activations": ("sigmoid", "sigmoid"), "has_score_bias": masked}
    for batch in (1, 7):
        inputs = _inputs(batch, batch)
        got = interpret(graph, [x.numpy() for x in inputs])[0]
        assert max_abs_error(got, module(*inputs)) <= FP32_ATOL
    assert FuseAttention().run(graph, PassContext()).rewrites == {}


@pytest.mark.parametrize("variant,reason", [
    ({"unit": "deeprecsys"}, "attention unit input is not [k, q, k-q, k*q]"),
    ({"expose_scores": True}, "an attention intermediate has another user"),
    ({"act": "leaky_relu"}, "score layer activation leaky_relu is not fused"),  # its slope is not carried
])
def test_declines_with_reason(variant: dict, reason: str) -> None:
    graph, stats = _run(Attention(**variant))
    assert stats.rewrites == {}
    assert stats.rejects == {f"target-attention: {reason}": 1}
    assert "target_attention" not in graph.op_histogram()


@pytest.mark.parametrize("widths,act", [((6, 5), "sigmoid"), ((20,), "relu"), ((17, 33, 3), "relu")])
def test_compiled_kernel_matches_eager(widths: tuple[int, ...], act: str) -> None:
    module = Attention(widths=widths, act=act).eval()
    compiled = recc.compile(module, _inputs(3, 0), tuning_db=None)
    assert compiled.report["kernels"] == {"target_attention": 1}
    for batch in (1, 7, 300):
        inputs = _inputs(batch, 50 + batch)
        assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL, f"batch {batch}"


# -- scaled-dot-product attention ----------------------------------------------------------------------------

class SDPA(nn.Module):
    """The same math in the spellings models use: F.scaled_dot_product_attention (with an additive mask or
    none), and by hand with the scale as a division or applied to q first."""

    def __init__(self, spelling: str = "functional", masked: bool = True, expose_scores: bool = False) -> None:
        super().__init__()
        self.spelling, self.masked, self.expose_scores = spelling, masked, expose_scores

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
        if self.spelling == "functional":
            return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask if self.masked else None)
        if self.spelling == "untransposed-k":
            scores = q @ k[..., :q.shape[-1]]  # k used as [.., d, Lk] directly: not q k^T
        elif self.spelling == "scaled-q":
            scores = (q * 0.125) @ k.transpose(-1, -2)
        else:
            scores = (q @ k.transpose(-1, -2)) / 8.0
        out = torch.softmax(scores + mask if self.masked else scores, dim=-1) @ v
        return (out, scores) if self.expose_scores else out


def _sdpa_inputs(batch: int, seed: int, lq: int = 5, lk: int = 8, dim: int = 8, dv: int = 12):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, lq, dim, generator=g), torch.randn(batch, 4, lk, dim, generator=g),
            torch.randn(batch, 4, lk, dv, generator=g), torch.randn(batch, 1, lq, lk, generator=g))


@pytest.mark.parametrize("spelling,masked", [("functional", True), ("functional", False), ("divided", True),
                                             ("scaled-q", False)])
def test_scaled_dot_product_spellings_fuse(spelling: str, masked: bool) -> None:
    module = SDPA(spelling, masked)
    graph = capture(module, _sdpa_inputs(2, 0))
    stats = FuseAttention().run(graph, PassContext())
    verify(graph)
    assert stats.rewrites == {"scaled-dot-product-attention": 1}
    assert graph.op_histogram() == {"attention": 1}
    assert FuseAttention().run(graph, PassContext()).rewrites == {}
    for batch in (1, 3):
        inputs = _sdpa_inputs(batch, batch)
        assert max_abs_error(interpret(graph, [x.numpy() for x in inputs])[0], module(*inputs)) <= FP32_ATOL


@pytest.mark.parametrize("variant,reason", [
    ({"spelling": "untransposed-k"}, "k is not transposed over its last two axes"),
    ({"spelling": "divided", "expose_scores": True}, "an attention intermediate has another user"),
])
def test_scaled_dot_product_declines_with_reason(variant: dict, reason: str) -> None:
    inputs = _sdpa_inputs(2, 0, lk=8, dim=8)
    graph = capture(SDPA(**variant), inputs)
    stats = FuseAttention().run(graph, PassContext())
    assert stats.rewrites == {}
    assert stats.rejects == {f"scaled-dot-product-attention: {reason}": 1}


@pytest.mark.parametrize("masked,dims", [(True, (5, 8, 8, 12)), (False, (1, 33, 6, 5))])
def test_compiled_scaled_dot_product_kernel_matches_eager(masked: bool, dims: tuple[int, ...]) -> None:
    module = SDPA("functional", masked)
    compiled = recc.compile(module, _sdpa_inputs(2, 0, *dims), tuning_db=None)
    assert compiled.report["kernels"] == {"attention": 1}
    for batch in (1, 7, 300):
        inputs = _sdpa_inputs(batch, 200 + batch, *dims)
        assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL, f"batch {batch}"


def test_multihead_attention_module_compiles_to_one_attention_op() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    module = SelfAttention().eval()
    compiled = recc.compile(module, (torch.randn(2, 7, 16),), tuning_db=None)
    assert compiled.report["final_ops"]["attention"] == 1 and "softmax" not in compiled.report["final_ops"]
    for batch in (1, 5):
        x = torch.randn(batch, 7, 16)
        assert max_abs_error(compiled(x), module(x)) <= FP32_ATOL
