"""The interpreter (the passes' oracle) on NaN, +inf and -inf, as eager PyTorch: each module of
tests/ieee_cases.py captured, run through the default pipeline (so the fused ops run: dense with its
activation, target_attention, attention, gru, augru, dot_interaction) and interpreted, at batches 1, 7
and 37. No TVM build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recc.compiler.interpreter import interpret
from recc.compiler.pass_manager import PassContext, run_pipeline
from recc.frontends.torch_export import capture
from recc.models import create
from recc.models.recurrent import AUGRU, GRU
from recc.passes.pipeline import build_passes
from tests.ieee_cases import (
    BATCHES,
    MODULE_ACT,
    Attention,
    EmbeddingMLP,
    TargetAttention,
    attention_unit_inputs,
    augru_inputs,
    dense_module,
    embedding_inputs,
    gru_inputs,
    math_sdpa,
    poison,
    randn,
    sdpa_inputs,
    seeded,
)

pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning", "ignore::RuntimeWarning")


def _check(module, make_inputs, fused: str | None = None, which=None, reference=None) -> None:
    module.eval()
    graph = capture(module, make_inputs(4, 0))
    run_pipeline(graph, build_passes(), PassContext())
    if fused is not None:
        assert graph.op_histogram().get(fused, 0) == 1, graph.op_histogram()
    for batch in BATCHES:
        for xs in poison(make_inputs(batch, batch), seed=batch, which=which):
            with torch.no_grad():
                want = (reference or module)(*xs)
            got = torch.from_numpy(interpret(graph, [np.asarray(x) for x in xs])[0])
            torch.testing.assert_close(got, want, equal_nan=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODULE_ACT))
def test_dense_activation(name: str) -> None:
    _check(dense_module(name), lambda b, s: (randn(b, 12, seed=s),), fused="dense")


def test_embedding_model() -> None:
    _check(seeded(EmbeddingMLP), embedding_inputs)


def test_target_attention() -> None:
    _check(seeded(TargetAttention), attention_unit_inputs, fused="target_attention", which=(0, 1))


def test_scaled_dot_product_attention() -> None:
    _check(Attention(), sdpa_inputs, fused="attention", reference=math_sdpa)


def test_gru() -> None:
    _check(seeded(GRU, 8, 16), gru_inputs, fused="gru")


def test_augru() -> None:
    _check(seeded(AUGRU, 8, 16), augru_inputs, fused="augru")


def test_dot_interaction() -> None:
    model = create("dlrm-rmc1", scale=0.001, seed=0)
    _check(model, lambda b, s: model.example_inputs(b, seed=s), fused="dot_interaction")
