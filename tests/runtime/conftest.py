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
