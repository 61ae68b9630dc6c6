"""Every built-in model, compiled end to end, equals eager PyTorch at batch 1, 7 and 256 on fresh seeded
inputs (one artifact per model serves all three batches). fp32 max abs error <= 1e-5 on the
probabilities (DIEN's recurrent cells included: measured errors are ~1e-7)."""

from __future__ import annotations

import pytest
import torch

import recc
from recc.models import create, names
from tests.conftest import FP32_ATOL, max_abs_error


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
    assert compiled.report["final_ops"].get("dense", 0) >= 1
