"""Every gather a compiled model runs is range-checked, whatever op spells it, and matches eager PyTorch:
an in-range result equal to eager's, and a ValueError where eager raises IndexError/RuntimeError.

`w[ids]` wraps a negative id once (ids -1 reads the last row, -rows the first, -rows - 1 is refused);
`index_select`, `torch.gather` and `F.embedding` refuse negatives. Ids that reach the lookup through a cast are traced to
the input and checked there; ids computed in the graph (`ids * 2 + 1`) are checked right before the
gather, inside the compiled function (which refuses a bad index even when called without the runtime).
Plus the inputs that used to reach TVM raw: int32 ids, batch 0, zero bags, requires_grad, sparse.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recc
from recc.api import compile_graph
from recc.compiler.artifact import BAD_ID_MESSAGE
from recc.frontends.torch_export.capture import capture

ROWS = 100


class Indexed(torch.nn.Module):  # the model: a table indexed directly
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(ROWS, 8))
        self.lin = torch.nn.Linear(8, 1)

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(self.w[ids] + x))


class Lookup(torch.nn.Module):
    """A lookup spelled by `how` on ids [B] (or [B, 3] for "index2d"), summed to [B, 8]."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.w = torch.nn.Parameter(torch.randn(ROWS, 8))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.how == "index_select":
            return torch.index_select(self.w, 0, ids)
        if self.how == "index2d":
            return self.w[ids].sum(1)
        if self.how == "cast":  # int32 ids widened in the graph: traced through the cast
            return torch.nn.functional.embedding(ids.long(), self.w)
        if self.how == "int32":  # int32 ids straight into the lookup
            return torch.nn.functional.embedding(ids, self.w)
        return self.w[ids * 2 + 1]  # "arithmetic": computed ids, checked inside the function


def _same_as_eager(model: torch.nn.Module, compiled: recc.CompiledModel, *inputs: torch.Tensor) -> None:
    with torch.no_grad():
        try:
            want = model(*inputs)
        except (IndexError, RuntimeError):
            with pytest.raises(ValueError, match="out of range|negative"):
                compiled(*inputs)
            return
    got = compiled(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def indexed() -> tuple[torch.nn.Module, recc.CompiledModel]:
    torch.manual_seed(0)
    model = Indexed().eval()
    return model, recc.compile(model, (torch.tensor([0, 1, 2, 3]), torch.randn(4, 8)))


@pytest.mark.parametrize("last", [3, ROWS - 1, 150, 10**9, -1, -ROWS, -ROWS - 1, -(10**9)])
def test_indexed_table_follows_eager(indexed, last: int) -> None:
    model, compiled = indexed
    _same_as_eager(model, compiled, torch.tensor([0, 1, 2, last]), torch.randn(4, 8))


def test_indexed_table_checks_inside_the_function(indexed) -> None:
    """The wrapping range -rows <= id < rows is checked by the compiled function: called without the
    runtime's checks, it still refuses a bad index."""
    _, compiled = indexed
    assert compiled.manifest.id_checks.ids["ids"][0].wrap
    # checked once, first thing (the gather needs no second check), so the fast path stays on
    assert compiled.manifest.id_checks.in_kernel == ("ids",) and compiled._fast
    assert compiled.report["kernels"]["check_ids"] == 1
    x = torch.randn(4, 8)
    compiled._main(torch.tensor([0, 1, 2, -ROWS]), x, *compiled._weights)  # wraps to row 0
    for bad in (ROWS, -ROWS - 1):
        with pytest.raises(Exception, match=BAD_ID_MESSAGE):
            compiled._main(torch.tensor([0, 1, 2, bad]), x, *compiled._weights)


def test_batch_zero_and_requires_grad_match_eager(indexed) -> None:
    model, compiled = indexed
    empty = compiled(torch.zeros(0, dtype=torch.long), torch.zeros(0, 8))
    assert empty.shape == model(torch.zeros(0, dtype=torch.long), torch.zeros(0, 8)).shape == (0, 1)
    ids, x = torch.tensor([5, 6, -7]), torch.randn(3, 8, requires_grad=True)
    torch.testing.assert_close(compiled(ids, x), model(ids, x).detach(), rtol=1e-5, atol=1e-5)


def test_sparse_inputs_are_refused(indexed) -> None:
    _, compiled = indexed
    with pytest.raises(ValueError, match="sparse"):
        compiled(torch.tensor([0, 1]), torch.randn(2, 8).to_sparse())


@pytest.mark.parametrize("how, dtype, ids, bad", [
    ("index_select", torch.int64, [0, 5, ROWS - 1], [[-1], [ROWS], [-ROWS]]),
    ("index2d", torch.int64, [[0, 5, ROWS - 1], [-1, -ROWS, 7]], [[[0, 0, ROWS]], [[-ROWS - 1, 0, 0]]]),
    ("cast", torch.int32, [0, 5, ROWS - 1], [[-1], [ROWS], [2**31 - 1]]),
    ("int32", torch.int32, [0, 5, ROWS - 1], [[-1], [ROWS], [-(2**31)]]),
    ("arithmetic", torch.int64, [0, 5, 49, -1, -50], [[50], [-51], [10**9]]),  # -1 * 2 + 1 wraps to row 99
])
def test_lookups_follow_eager(how: str, dtype: torch.dtype, ids: list, bad: list) -> None:
    torch.manual_seed(1)
    model = Lookup(how).eval()
    example = torch.tensor(ids, dtype=dtype)
    compiled = recc.compile(model, (example,))
    traced = how != "arithmetic"
    assert bool(compiled.manifest.id_checks.ids) == traced
    assert bool(compiled.manifest.id_checks.unchecked) == (not traced)
    _same_as_eager(model, compiled, example)
    for row in bad:
        wrong = torch.tensor(row, dtype=dtype)
        with pytest.raises((IndexError, RuntimeError)):
            model(wrong)
        _same_as_eager(model, compiled, wrong)


class Gathered(torch.nn.Module):
    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 1, ids)


def test_torch_gather_follows_eager() -> None:
    x, ids = torch.randn(3, 10), torch.tensor([[1, 2], [3, 9], [0, 0]])
    compiled = recc.compile(Gathered(), (x, ids))
    assert compiled._fast  # the whole input is checked first thing in the function
    _same_as_eager(Gathered(), compiled, x, ids)
    for bad in (10, -1, 10**9):
        wrong = ids.clone()
        wrong[1, 1] = bad
        _same_as_eager(Gathered(), compiled, x, wrong)


def test_one_input_whole_and_sliced_keeps_each_tables_bound() -> None:
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.small, self.big = torch.nn.Embedding(10, 4), torch.nn.Embedding(ROWS, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.small(ids[:, 0]) + self.big(ids).sum(1)

    model = Two().eval()
    compiled = recc.compile(model, (torch.tensor([[1, 2], [3, 4]]),))
    _same_as_eager(model, compiled, torch.tensor([[9, 50], [0, ROWS - 1]]))  # 50: valid for the big table
    for bad in ([[10, 0]], [[0, ROWS]], [[0, -1]]):
        _same_as_eager(model, compiled, torch.tensor(bad))


def test_offsets_bags_with_zero_bags() -> None:
    model = torch.nn.EmbeddingBag(ROWS, 4, mode="sum").eval()
    dims = ({0: torch.export.Dim("nnz")}, {0: torch.export.Dim("batch")})
    graph = capture(model, (torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2, 3])), dynamic_shapes=dims)
    compiled = compile_graph(graph, "bags")
    for ids, offsets in (([1, 2, 3, 4], [0, 2, 3]), ([], []), ([], [0, 0])):
        ids_t, offsets_t = torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)
        got = compiled(ids_t, offsets_t)
        np.testing.assert_allclose(got.numpy(), model(ids_t, offsets_t).detach().numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        compiled(torch.tensor([1, -1]), torch.tensor([0]))
