"""sort / argsort / msort / topk (torch frontend -> IR -> interpreter and TVM build) equal eager PyTorch on
seeded inputs with NaN, +-inf, -0.0 and heavy ties, float32 and int64, along the last and the first axis,
both directions.

Ties: recc's sorts are stable. torch's are for stable=True, and for stable=False on rows of at most 16
(std::sort ends in an insertion sort); longer rows with stable=False, and topk at any length, order equal
values as libstdc++'s introsort / nth_element leave them, which recc does not reproduce. So the cases
below compare positions with eager where eager's are defined that way, and topk's positions on ties with
the stable order (its values always with eager)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from recc.compiler.interpreter import interpret
from recc.frontends.torch_export import capture

NAN, INF = float("nan"), float("inf")


def _floats(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Few distinct values (heavy ties), with NaN, +-inf and -0.0 among them."""
    g = np.random.default_rng(seed)
    pool = np.array([NAN, INF, -INF, 0.0, -0.0, 1.5, -2.0, 3.0, 1.5, NAN], np.float32)
    return torch.from_numpy(pool[g.integers(0, len(pool), shape)])


def _ints(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.integers(-3, 4, shape).astype(np.int64))


def _distinct(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32) - 7)


LONG_F, LONG_I = _floats((6, 40), 1), _ints((6, 40), 2)
TALL_F, TALL_I = _floats((40, 6), 3), _ints((40, 6), 4)
SHORT_F, SHORT_I = _floats((7, 13), 5), _ints((7, 13), 6)
CASES: dict[str, tuple[Callable[..., object], torch.Tensor]] = {}
for _tag, _x, _dim in (("f_last", LONG_F, -1), ("i_last", LONG_I, -1), ("f_first", TALL_F, 0), ("i_first", TALL_I, 0)):
    for _desc in (False, True):
        _name = f"{_tag}_{'desc' if _desc else 'asc'}"
        CASES[f"sort_stable_{_name}"] = (lambda x, d=_dim, s=_desc: torch.sort(x, dim=d, descending=s, stable=True), _x)
        CASES[f"argsort_stable_{_name}"] = (
            lambda x, d=_dim, s=_desc: torch.argsort(x, dim=d, descending=s, stable=True), _x)
for _tag, _x in (("f", SHORT_F), ("i", SHORT_I)):
    for _desc in (False, True):  # stable=False, rows of 13: torch's order is the stable one
        CASES[f"sort_{_tag}_short_{'desc' if _desc else 'asc'}"] = (lambda x, s=_desc: torch.sort(x, 1, s), _x)
        CASES[f"argsort_{_tag}_short_dim0_{'desc' if _desc else 'asc'}"] = (
            lambda x, s=_desc: torch.argsort(x[:, :7].T.contiguous(), 0, s), _x)
CASES["msort_f"] = (torch.msort, TALL_F)
CASES["msort_i"] = (torch.msort, TALL_I)
CASES["sort_values_long_unstable_f"] = (lambda x: torch.sort(x, descending=True).values, LONG_F)
DISTINCT = _distinct((5, 30), 7)
for _k in (1, 4, 30):
    for _largest in (True, False):
        CASES[f"topk_k{_k}_{'largest' if _largest else 'smallest'}"] = (
            lambda x, k=_k, big=_largest: torch.topk(x, k, dim=1, largest=big), DISTINCT)
CASES["topk_dim0"] = (lambda x: torch.topk(x, 2, dim=0), DISTINCT)
CASES["quantile"] = (lambda x: torch.quantile(x, torch.tensor([0.1, 0.5, 0.9]), dim=1), DISTINCT)
CASES["nanquantile"] = (lambda x: torch.nanquantile(x, 0.3, dim=1), torch.where(LONG_F.isinf(), 0.0, LONG_F))


class Wrap(torch.nn.Module):
    def __init__(self, fn: Callable[..., object]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> object:
        return self.fn(x)


def _outputs(result: object) -> list[torch.Tensor]:
    return list(result) if isinstance(result, tuple) else [result]  # type: ignore[arg-type]


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor], exact: bool = True) -> None:
    """Exact (a sort moves values, it computes none); `exact=False` for quantile's interpolation."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        if w.is_floating_point() and not exact:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, equal_nan=True)
        elif w.is_floating_point():
            assert torch.equal(g.isnan(), w.isnan()), (g, w)
            assert torch.equal(torch.nan_to_num(g), torch.nan_to_num(w)), (g, w)
        else:
            assert torch.equal(g, w), (g, w)


def test_the_inputs_have_what_the_order_depends_on() -> None:
    """NaN, infinities and ties in every row, so that a sort ignoring them would fail the cases below."""
    for x in (LONG_F, SHORT_F):
        assert x.isnan().any(1).all() and x.isposinf().any() and x.isneginf().any()
        assert all(len(set(r.tolist())) < len(r) - 2 for r in torch.nan_to_num(x))
    for x in (LONG_I, SHORT_I):
        assert all(len(set(r.tolist())) < len(r) - 2 for r in x)
    assert not torch.equal(torch.argsort(LONG_I, stable=True), torch.argsort(LONG_I.flip(1), stable=True).flip(1))


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_eager(name: str) -> None:
    fn, x = CASES[name]
    graph = capture(Wrap(fn), (x,), dynamic_shapes=({},))
    got = [torch.from_numpy(np.asarray(a)) for a in interpret(graph, [x.numpy()])]
    assert_same(got, _outputs(fn(x)), exact="quantile" not in name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name: str) -> None:
    import recc

    fn, x = CASES[name]
    compiled = recc.compile(Wrap(fn), (x,), dynamic_shapes=({},))
    assert_same(_outputs(compiled(x)), _outputs(fn(x)), exact="quantile" not in name)


def _topk_on_ties(x: torch.Tensor, k: int, dim: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    values, indices = torch.sort(x, dim=dim, descending=largest, stable=True)
    return values.narrow(dim, 0, k), indices.narrow(dim, 0, k)


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("x", [LONG_F, LONG_I], ids=["float32", "int64"])
def test_topk_on_ties_compiled_and_interpreted(x: torch.Tensor, k: int, largest: bool) -> None:
    """Values as eager's; positions of equal values in index order (the stable sort's), NaN largest."""
    import recc

    fn = lambda t: torch.topk(t, k, dim=-1, largest=largest)  # noqa: E731
    want_values = torch.topk(x, k, dim=-1, largest=largest).values
    stable = list(_topk_on_ties(x, k, -1, largest))
    assert_same([stable[0]], [want_values])
    graph = capture(Wrap(fn), (x,), dynamic_shapes=({},))
    assert_same([torch.from_numpy(np.asarray(a)) for a in interpret(graph, [x.numpy()])], stable)
    assert_same(_outputs(recc.compile(Wrap(fn), (x,), dynamic_shapes=({},))(x)), stable)


def test_symbolic_batch_with_a_static_sorted_axis() -> None:
    import recc

    batch = torch.export.Dim("batch", min=2)
    fn = lambda t: (torch.sort(t, dim=-1, descending=True, stable=True), torch.topk(t, 3).indices)  # noqa: E731
    model = Wrap(lambda t: (*fn(t)[0], fn(t)[1]))
    compiled = recc.compile(model, (LONG_F,), dynamic_shapes=({0: batch},))
    for rows in (2, 6, 9):
        x = _floats((rows, 40), 10 + rows)
        values, indices = torch.sort(x, dim=-1, descending=True, stable=True)
        assert_same(_outputs(compiled(x)), [values, indices, _topk_on_ties(x, 3, -1, True)[1]])


def test_sort_along_the_symbolic_batch_compiles_and_topk_there_is_refused() -> None:
    import recc
    from recc.frontends.torch_export.capture import UnsupportedOpError

    batch = torch.export.Dim("batch", min=2)
    compiled = recc.compile(Wrap(lambda t: torch.sort(t, dim=0, stable=True)), (TALL_I,),
                            dynamic_shapes=({0: batch},))
    for rows in (3, 40, 57):
        x = _ints((rows, 6), rows)
        assert_same(_outputs(compiled(x)), list(torch.sort(x, dim=0, stable=True)))
    with pytest.raises(UnsupportedOpError, match="topk along a symbolic dim"):
        capture(Wrap(lambda t: torch.topk(t, 2, dim=0)), (TALL_I,), dynamic_shapes=({0: batch},))
