"""The fbgemm-tbe systems (recc/bench/tbe.py): a model's EmbeddingBags as one FBGEMM table-batched op match
eager (fp32 exactly up to summation order, 8-bit row-wise within the reduced-precision tolerance), the model
itself is left untouched, and models the rewrite cannot handle fail with a clear error."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch import nn

import recc.models
from recc.bench.reduced import REDUCED_SYSTEMS
from recc.bench.systems import SYSTEMS, make_system
from recc.bench.tbe import TbeRewriteError, with_table_batched_lookups

needs_fbgemm = pytest.mark.skipif(importlib.util.find_spec("fbgemm_gpu") is None,
                                  reason="the bench-tbe extra (fbgemm-gpu-cpu) is not installed")


@pytest.fixture(scope="module")
def rmc1() -> nn.Module:
    return recc.models.create("dlrm-rmc1", scale=0.01)


@needs_fbgemm
@pytest.mark.parametrize(("int8", "atol"), [(False, 1e-5), (True, 3e-2)])
@pytest.mark.parametrize("batch", [1, 64])
def test_rmc1_one_batched_op_matches_eager(rmc1: nn.Module, int8: bool, atol: float, batch: int) -> None:
    rewritten, facts = with_table_batched_lookups(rmc1, int8=int8)
    assert facts["ops"] == 1 and facts["tables"] == facts["features"] == 8
    assert facts["embedding_bags_left"] == 0
    assert facts["weights_tys"] == {"INT8" if int8 else "FP32": 8}
    assert not any(isinstance(module, nn.EmbeddingBag) for module in rewritten.modules())
    inputs = rmc1.example_inputs(batch, seed=3)
    with torch.inference_mode():
        expected, got = rmc1(*inputs), rewritten(*inputs)
    assert got.shape == expected.shape == (batch, 1)
    assert torch.allclose(got, expected, rtol=0, atol=atol)
    assert sum(isinstance(module, nn.EmbeddingBag) for module in rmc1.modules()) == 8  # model untouched


@needs_fbgemm
def test_systems_registered_and_report_their_facts(rmc1: nn.Module) -> None:
    assert {"fbgemm-tbe", "fbgemm-tbe-int8"} <= set(SYSTEMS) and "fbgemm-tbe-int8" in REDUCED_SYSTEMS
    system = make_system("fbgemm-tbe-int8")
    facts = system.setup(rmc1, threads=1)
    assert facts["op"] == "IntNBitTableBatchedEmbeddingBagsCodegen" and facts["fbgemm_gpu"]
    assert 0 < facts["table_bytes"] < sum(t.weight.numel() * 4 for t in rmc1.tables) / 3  # 8-bit rows
    inputs = rmc1.example_inputs(4, seed=1)
    with torch.inference_mode():
        assert system.to_numpy(system.prepare(inputs)()).shape == (4, 1)


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@needs_fbgemm
def test_model_without_embedding_bags_is_refused_clearly() -> None:
    with pytest.raises(TbeRewriteError, match="no nn.EmbeddingBag lookups"):
        make_system("fbgemm-tbe").setup(Dense(), threads=1)


@needs_fbgemm
def test_untraceable_model_is_refused_clearly() -> None:
    with pytest.raises(TbeRewriteError, match="torch.fx cannot trace"):
        with_table_batched_lookups(recc.models.create("dien", scale=0.001))


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fbgemm_gpu", None)  # import fbgemm_gpu now raises ImportError
    with pytest.raises(ImportError, match=r"recc\[bench-tbe\]"):
        make_system("fbgemm-tbe").setup(recc.models.create("ncf", scale=0.001), threads=1)
