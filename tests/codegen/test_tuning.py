"""Kernel tuning: a budgeted search that records its choices in the tuning database, a second compile
that reuses them without searching, a zero budget that tunes nothing, and a corrupt database refused by
name. Tuned artifacts still equal eager (fp32, atol 1e-5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import recc
from recc.compiler.codegen.tvm.tuning import MIN_GAIN, TuningDatabaseError
from tests.conftest import FP32_ATOL, max_abs_error


class Lookups(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bags = nn.ModuleList([nn.EmbeddingBag(100, 8) for _ in range(3)])
        self.mlp = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([bag(ids[:, t]) for t, bag in enumerate(self.bags)], dim=1))


def _ids(batch: int) -> torch.Tensor:
    return torch.randint(0, 100, (batch, 3, 4), generator=torch.Generator().manual_seed(batch))


def test_tunes_within_budget_then_reuses(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    module = Lookups().eval()
    first = recc.compile(module, (_ids(4),), tune_budget_s=120, tuning_db=db)
    tuned = first.report["tuning"]["tuned"]
    assert {t["kernel"] for t in tuned} == {"dense", "batched_embedding_bag"}
    for t in tuned:  # a candidate replaces the default only when it is at least MIN_GAIN faster
        assert t["params"] == {} or t["us"] <= t["default_us"] * (1 - MIN_GAIN), t
    entries = json.loads(db.read_text())["entries"]
    assert len(entries) == len(tuned) == 3  # two dense shapes and one gather
    second = recc.compile(module, (_ids(4),), tuning_db=db)
    assert second.report["tuning"]["tuned"] == [] and second.report["tuning"]["reused"] == 3
    for compiled in (first, second):
        for batch in (1, 7, 300):
            assert max_abs_error(compiled(_ids(batch)), module(_ids(batch))) <= FP32_ATOL


def test_zero_budget_tunes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    compiled = recc.compile(Lookups().eval(), (_ids(4),), tune_budget_s=0, tuning_db=db)
    assert compiled.report["tuning"]["tuned"] == [] and not db.exists()


def test_corrupt_database_is_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    db.write_text('{"entries": 3}')
    with pytest.raises(TuningDatabaseError, match="tuning.json: not a recc tuning database"):
        recc.compile(Lookups().eval(), (_ids(4),), tuning_db=db)
