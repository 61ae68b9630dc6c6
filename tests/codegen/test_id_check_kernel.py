"""The in-function embedding-id range check (kernels/cpu/checks.py) on its own, then inside compiled models.

Kernel level: one bound for the whole input (rank 1 and 3) and per-slot bounds along an axis (with a
column that is not an id, bound -1 = none); each passes on valid ids including the largest, and fails on
an id equal to its bound, a negative id and a huge one, wherever it sits (first, last, middle element);
batch 0 passes. Model level: a model whose ids cross two inputs and two tables refuses a bad id in each,
from the compiled function itself and from the call (which names it).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import tvm
from recc.compiler.codegen.tvm.kernels.cpu.checks import BAD_ID_MESSAGE, id_range_check
from recc.compiler.codegen.tvm.target import resolve_target

import recc


@functools.cache
def _built(rank: int, axis: int | None, period: int):
    func = id_range_check(rank, axis, period).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=resolve_target("cpu").to_tvm())["main"]


def _passes(ids: np.ndarray, bounds: np.ndarray, axis: int | None) -> bool:
    fn = _built(ids.ndim, axis, len(bounds))
    try:
        fn(tvm.runtime.tensor(ids), tvm.runtime.tensor(bounds.astype(np.int64)))
    except RuntimeError as e:
        assert BAD_ID_MESSAGE in str(e)
        return False
    return True


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (1, 1, 1)])
def test_one_bound_for_the_whole_input(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    rows = 50
    ids = rng.integers(0, rows, shape)
    ids.flat[-1] = rows - 1  # the largest valid id
    assert _passes(ids, np.array([rows]), None)
    for where in (0, ids.size // 2, ids.size - 1):
        for bad in (rows, -1, 2**62):
            wrong = ids.copy()
            wrong.flat[where] = bad
            assert not _passes(wrong, np.array([rows]), None), (where, bad)
    assert _passes(np.zeros((0,) + shape[1:], np.int64), np.array([rows]), None)


def test_per_slot_bounds_along_an_axis() -> None:
    rng = np.random.default_rng(1)
    bounds = np.array([10, 1000, -1, 3])  # slot 2 is not an id column: anything goes
    ids = np.stack([rng.integers(0, b if b > 0 else 5, (6, 8)) for b in bounds], axis=1)  # [6, 4, 8]
    ids[:, 2, :] = -12345
    ids[5, 0, 7], ids[0, 3, 0] = 9, 2  # largest valid ids of slots 0 and 3
    assert _passes(ids, bounds, 1)
    for slot, bad in ((0, 10), (1, 1000), (3, 3), (3, -1), (0, 2**63 - 1)):
        wrong = ids.copy()
        wrong[2, slot, 4] = bad
        assert not _passes(wrong, bounds, 1), (slot, bad)
    wrong = ids.copy()
    wrong[:, 0, :] = 999  # valid for slot 1, not for slot 0: the bound follows the slot
    assert not _passes(wrong, bounds, 1)


class TwoInputs(torch.nn.Module):
    """Ids of two tables in one input (sliced per table) and a third table on its own input."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.EmbeddingBag(30, 8, mode="sum")
        self.b = torch.nn.EmbeddingBag(70, 8, mode="sum")
        self.c = torch.nn.Embedding(20, 8)

    def forward(self, ids: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.a(ids[:, 0]) + self.b(ids[:, 1]) + self.c(item)


def test_compiled_function_refuses_bad_ids_of_every_input() -> None:
    torch.manual_seed(0)
    model = TwoInputs().eval()
    ids = torch.stack([torch.randint(0, 30, (4, 5)), torch.randint(0, 70, (4, 5))], dim=1)  # [4, 2, 5]
    item = torch.randint(0, 20, (4,))
    compiled = recc.compile(model, (ids, item))
    assert sorted(compiled.manifest.id_checks.in_kernel) == ["ids", "item"] and compiled._fast
    with torch.no_grad():
        assert float((compiled(ids, item) - model(ids, item)).abs().max()) <= 1e-5
    for which, index, bad, message in ((0, (1, 0, 2), 30, "embedding id 30 is out of range for a table of 30"),
                                       (0, (3, 1, 4), 70, "embedding id 70 is out of range for a table of 70"),
                                       (1, (2,), -4, "embedding id -4 is negative")):
        inputs = [ids.clone(), item.clone()]
        inputs[which][index] = bad
        with pytest.raises(RuntimeError, match=BAD_ID_MESSAGE):
            compiled._main(*inputs, *compiled._weights)
        with pytest.raises(ValueError, match=message):
            compiled(*inputs)
    ok = ids.clone()
    ok[:, 0, :] = 29  # a valid id of table a, out of range for nothing
    with torch.no_grad():
        assert float((compiled(ok, item) - model(ok, item)).abs().max()) <= 1e-5
