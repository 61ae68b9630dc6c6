"""Shared test helpers: seeded inputs and the tolerance every fp32 comparison states."""

from __future__ import annotations

import inspect

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


# The fast tier (`pytest -m "not slow"`, under a minute) builds no TVM library and reads no user tuning
# database: IR, passes through the interpreter, frontends, artifact schema, layering. Everything that
# builds and runs compiled code is `slow`: these folders and files whole, and any other test whose body
# compiles (calls one of BUILDS) or that carries the mark itself.
SLOW_PATHS = ("codegen/", "runtime/", "bench/", "models/test_compiled_models.py")
BUILDS = ("recc.compile(", "compile_graph(", "build_library(", "relax.build(", '["compile"', "onnxruntime")


def _builds(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return False
    return any(b in source for b in BUILDS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.as_posix()
        if any(f"/tests/{p}" in path for p in SLOW_PATHS) or _builds(item):
            item.add_marker(pytest.mark.slow)
