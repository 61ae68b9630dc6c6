"""canonicalize-lookups on its own: an embedding pooled by hand and a one-id lookup become embedding_bag
(numbers equal, reference interpreter), each near miss declines with its reason, idempotent."""

from __future__ import annotations

import numpy as np
import pytest

from recc.compiler.ir import Graph
from recc.passes.canonicalize_lookups import CanonicalizeLookups
from tests.passes.graphs import Small, assert_same_function, run

ROWS, DIM, BAG = 9, 4, 3


def _pooled(reduce: str = "sum", axes: tuple[int, ...] = (1,), keepdims: bool = False,
            rows_used_twice: bool = False) -> Graph:
    g = Small()
    ids = g.input("ids", BAG, dtype="int64")
    table = g.param("table", np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32))
    rows = g.op("embedding", table, ids)
    pooled = g.op(reduce, rows, axes=axes, keepdims=keepdims)
    return g.returns(pooled, rows) if rows_used_twice else g.returns(pooled)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_embedding_then_reduce_becomes_a_bag(reduce: str) -> None:
    graph = _pooled(reduce)
    before = graph.clone()
    stats = run(graph, CanonicalizeLookups())
    assert stats.rewrites == {"embedding-reduce-to-bag": 1} and stats.rejects == {}
    assert graph.op_histogram() == {"embedding_bag": 1}
    assert graph.nodes[0].attrs == {"layout": "fixed", "mode": reduce, "has_weights": False}
    assert graph.nodes[0].origin.startswith("rule embedding-reduce-to-bag")
    assert_same_function(before, graph, high=ROWS)


def test_one_id_per_sample_becomes_a_bag_of_one() -> None:
    g = Small()
    ids = g.input("user", dtype="int64")  # [batch]
    table = g.param("table", np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM))
    graph = g.returns(g.op("embedding", table, ids))
    before = graph.clone()
    assert run(graph, CanonicalizeLookups()).rewrites == {"one-hot-embedding-to-bag": 1}
    assert graph.op_histogram() == {"embedding_bag": 1, "reshape": 1}
    assert_same_function(before, graph, high=ROWS)


@pytest.mark.parametrize("knobs, reason", [
    ({"axes": (2,)}, "reduces over an axis other than the bag axis"),
    ({"keepdims": True}, "keeps the reduced axis"),
    ({"rows_used_twice": True}, "the looked-up rows have another user"),
])
def test_near_misses_decline_with_a_reason(knobs: dict, reason: str) -> None:
    graph = _pooled(**knobs)
    before = graph.op_histogram()
    stats = run(graph, CanonicalizeLookups())
    assert stats.rewrites == {}
    assert stats.rejects == {f"embedding-reduce-to-bag: {reason}": 1}
    assert graph.op_histogram() == before


def test_is_idempotent() -> None:
    graph = _pooled()
    run(graph, CanonicalizeLookups())
    again = run(graph, CanonicalizeLookups())
    assert again.rewrites == {} and again.rejects == {}
