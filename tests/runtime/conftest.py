"""Fixtures shared by the serving tests: one small compiled DLRM for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

import recc
from recc.models import create


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dlrm-rmc1 at scale 0.001, compiled once (the serving tests serve it as `rmc1`)."""
    model = create("dlrm-rmc1", scale=0.001, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None)
    return compiled.save(tmp_path_factory.mktemp("serve") / "rmc1.recc")


@pytest.fixture(scope="session")
def other_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `artifact` fixture's architecture with other weights (seed 1): a second version (hot swap) or
    a second variant (routing) whose outputs tell which one ran."""
    model = create("dlrm-rmc1", scale=0.001, seed=1)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None)
    return compiled.save(tmp_path_factory.mktemp("seed1") / "rmc1-seed1.recc")
