"""Shared test helpers: seeded inputs and the tolerance every fp32 comparison states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

FP32_ATOL = 1e-5  # max abs error accepted for fp32 outputs of magnitude ~1 (probabilities, activations)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def max_abs_error(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
