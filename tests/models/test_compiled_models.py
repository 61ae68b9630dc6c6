"""Every built-in model, compiled end to end, equals eager PyTorch at batch 1, 7 and 256 on fresh seeded
inputs (one artifact per model serves all three batches). fp32 max abs error <= 1e-5 on the
probabilities (DIEN's recurrent cells included: measured errors are ~1e-7)."""

from __future__ import annotations

import pytest
import torch

import recc
from recc.models import create, names
from tests.conftest import FP32_ATOL, max_abs_error

# The fused ops each model must end with (issue #5): every lookup in one table-batched op, DLRM's
# interaction as one op, DIN's attention unit as one op. DIEN's recurrent cells: see fuse-recurrent.
FUSED = {
    "dlrm-rmc1": {"batched_embedding_bag": 1, "dot_interaction": 1},
    "dlrm-rmc2": {"batched_embedding_bag": 1, "dot_interaction": 1},
    "dlrm-rmc3": {"batched_embedding_bag": 1, "dot_interaction": 1},
    "ncf": {"batched_embedding_bag": 1},
    "wnd": {"batched_embedding_bag": 1},
    "mt-wnd": {"batched_embedding_bag": 1},
    "din": {"batched_embedding_bag": 1, "target_attention": 1},
    "dien": {"batched_embedding_bag": 1, "gru": 1, "augru": 1},
}
UNFUSED = ("embedding_bag", "matmul", "take")


@pytest.mark.parametrize("name", names())
def test_compiled_model_matches_eager(name: str) -> None:
    model = create(name, scale=0.001, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), name=name)
    for batch in (1, 7, 256):
        inputs = model.example_inputs(batch, seed=1000 + batch)
        with torch.no_grad():
            expected = model(*inputs)
        got = compiled(*inputs)
        assert got.shape == expected.shape
        assert max_abs_error(got, expected) <= FP32_ATOL, f"{name} at batch {batch}"
    final_ops = compiled.report["final_ops"]
    assert final_ops.get("dense", 0) >= 1
    assert {op: final_ops.get(op, 0) for op in FUSED[name]} == FUSED[name]
    assert not set(UNFUSED) & set(final_ops), f"{name}: unfused {set(UNFUSED) & set(final_ops)}"
