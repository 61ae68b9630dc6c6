"""fuse-recurrent: GRU and AUGRU loops written in several ways become one gru / augru op (reference
interpreter and the TIR kernel vs eager), declines with reasons, idempotent. fp32 tolerance: 1e-5 on
states in (-1, 1) after 6 steps (measured errors ~1e-7; the kernel's fast_exp sigmoid/tanh are within
2e-7 of libm per step and a GRU step does not amplify errors: |dh'/dh| <= 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recc.compiler.interpreter import interpret
from recc.compiler.ir import verify
from recc.compiler.pass_manager import PassContext
from recc.passes.pipeline import build_passes
from recc.frontends.torch_export import capture
from recc.models.recurrent import AUGRU, GRU
from recc.passes.fuse_recurrent import FuseRecurrent
from torch import nn

import recc
from tests.conftest import FP32_ATOL, max_abs_error

L, I, H = 6, 5, 16


class Extractor(nn.Module):
    """DIEN's layers: GRU cells over the sequence, scores, AUGRU; returns (all GRU states, final AUGRU state)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = GRU(I, H)
        self.augru = AUGRU(H, H)

    def forward(self, x: torch.Tensor, scores: torch.Tensor):
        states = self.gru(x)
        return states, self.augru(states, torch.softmax(scores, dim=1))


class Spelled(nn.Module):
    """One GRU written differently from models.recurrent: the input projected step by step, separate
    sigmoids for r and z, and (1 - z) * n + z * h. Knobs break it for the negative tests."""

    def __init__(self, update: str = "gru", steps: int = L, leak_gate: bool = False, h0: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.w_ih, self.w_hh = nn.Linear(I, 3 * H), nn.Linear(H, 3 * H)
        self.update, self.steps, self.leak_gate, self.h0 = update, steps, leak_gate, h0

    def forward(self, x: torch.Tensor):
        h = x.new_zeros(x.shape[0], H) if not self.h0 else x.new_full((x.shape[0], H), self.h0)
        gates = []
        for t in range(self.steps):
            xt = self.w_ih(x[:, t])
            g = self.w_hh(h)
            r = torch.sigmoid(xt[:, :H] + g[:, :H])
            z = torch.sigmoid(xt[:, H:2 * H] + g[:, H:2 * H])
            n = torch.tanh(xt[:, 2 * H:] + r * g[:, 2 * H:])
            h = (1 - z) * n + z * h if self.update == "gru" else n + z * h
            gates.append(r)
        return (h, torch.stack(gates, 1)) if self.leak_gate else h


def _run(module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    graph = capture(module, inputs)
    for p in build_passes(("simplify-reshapes", "fuse-dense-activation", "simplify-slices")):
        p.run(graph, PassContext())
    stats = FuseRecurrent().run(graph, PassContext())
    verify(graph)
    return graph, stats


def _inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, L, I, generator=g), torch.randn(batch, L, generator=g)


def _check(graph, module, batches=(1, 7)) -> None:
    for batch in batches:
        inputs = _inputs(batch, seed=batch)[:len(graph.inputs)]
        with torch.no_grad():
            want = module(*inputs)
        got = interpret(graph, [x.numpy() for x in inputs])
        for g, w in zip(got, want if isinstance(want, tuple) else (want,), strict=True):
            assert max_abs_error(g, w) <= FP32_ATOL


def test_gru_and_augru_cells_become_one_op_each() -> None:
    module = Extractor().eval()
    graph, stats = _run(module, _inputs(3))
    assert stats.rewrites == {"gru-sequence": 1, "augru-sequence": 1}
    ops = graph.op_histogram()
    assert ops["gru"] == 1 and ops["augru"] == 1
    assert not {"sigmoid", "tanh"} & set(ops)
    _check(graph, module)


def test_other_spelling_with_per_step_projection_fuses_into_one_gemm() -> None:
    module = Spelled().eval()
    graph, stats = _run(module, _inputs(3)[:1])
    assert stats.rewrites == {"gru-sequence": 1}
    assert graph.op_histogram().get("dense") == 1  # the 6 per-step projections: one GEMM over [B, L, I]
    gru = next(n for n in graph.nodes if n.op == "gru")
    assert gru.inputs[0].producer.op == "dense" and gru.origin.startswith("rule gru-sequence")
    _check(graph, module)


@pytest.mark.parametrize("knobs, reason", [
    ({"update": "wrong"}, "step computes neither a GRU nor an AUGRU update"),
    ({"leak_gate": True}, "step body has 2 values used outside it"),
    ({"steps": L - 1}, "cells cover steps 0..4 of 6"),
    ({"h0": 0.5}, "initial state is not zero"),
])
def test_declines_with_reason(knobs: dict, reason: str) -> None:
    module = Spelled(**knobs).eval()
    graph, stats = _run(module, _inputs(3)[:1])
    assert stats.rewrites == {}
    assert any(reason in key for key in stats.rejects), stats.rejects
    assert "gru" not in graph.op_histogram()
    _check(graph, module)


def test_idempotent() -> None:
    graph, _ = _run(Extractor().eval(), _inputs(3))
    before = graph.op_histogram()
    again = FuseRecurrent().run(graph, PassContext())
    assert again.rewrites == {} and graph.op_histogram() == before


def test_nn_gru_is_captured_as_gru_ops() -> None:
    class Stacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.gru = nn.GRU(I, H, num_layers=2, batch_first=True)

        def forward(self, x: torch.Tensor):
            out, h_n = self.gru(x)
            return out, h_n.transpose(0, 1)

    module = Stacked().eval()
    graph = capture(module, _inputs(3)[:1])
    assert graph.op_histogram()["gru"] == 2
    _check(graph, module)


def test_compiled_kernel_matches_eager() -> None:
    module = Extractor().eval()
    compiled = recc.compile(module, _inputs(4), name="extractor", tuning_db=None)
    assert compiled.report["final_ops"].get("gru") == 1 and compiled.report["final_ops"].get("augru") == 1
    for batch in (1, 5, 64):
        inputs = _inputs(batch, seed=100 + batch)
        with torch.no_grad():
            want = module(*inputs)
        got = compiled(*inputs)
        for g, w in zip(got, want, strict=True):
            assert max_abs_error(g, w) <= FP32_ATOL, f"batch {batch}"
    assert np.isfinite(got[0].numpy()).all()
