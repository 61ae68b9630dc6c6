"""Gathers in the IR, without TVM: the interpreter reads indices as torch does (a wrapping `take` adds
`rows` to a negative index once; `embedding`, `embedding_bag` and a plain `take` refuse negatives; anything
out of range is an IndexError), and input_checks traces indices through casts, transposes and nested
slices to the input region each gather reads, or reports them untraceable (arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest

from recc.compiler.artifact import IdChecks, IdLimit
from recc.compiler.input_checks import id_checks, trace_ids
from recc.compiler.interpreter import interpret
from tests.passes.graphs import Small

TABLE = np.arange(40, dtype=np.float32).reshape(10, 4)


def _take(wrap: bool) -> tuple[Small, object]:
    g = Small()
    ids = g.input("ids", dtype="int64")
    return g, g.returns(g.op("take", g.param("w", TABLE), ids, axis=0, wrap=wrap))


@pytest.mark.parametrize("ids, want", [([0, 9], [0, 9]), ([-1, -10], [9, 0])])
def test_wrapping_take_reads_like_torch_indexing(ids: list[int], want: list[int]) -> None:
    _, graph = _take(wrap=True)
    out, = interpret(graph, [np.array(ids)])
    np.testing.assert_array_equal(out, TABLE[want])


@pytest.mark.parametrize("wrap, ids", [(True, [10]), (True, [-11]), (True, [10**9]), (False, [-1]), (False, [10])])
def test_out_of_range_indices_are_index_errors(wrap: bool, ids: list[int]) -> None:
    _, graph = _take(wrap)
    with pytest.raises(IndexError):
        interpret(graph, [np.array(ids)])


@pytest.mark.parametrize("op, attrs", [("embedding", {}), ("embedding_bag", {"mode": "sum", "layout": "fixed"})])
def test_embeddings_refuse_negative_ids(op: str, attrs: dict) -> None:
    g = Small()
    ids = g.input("ids", 2, dtype="int64")
    graph = g.returns(g.op(op, g.param("w", TABLE), ids, **attrs))
    interpret(graph, [np.array([[0, 9]])])
    for bad in (-1, 10):
        with pytest.raises(IndexError):
            interpret(graph, [np.array([[0, bad]])])


def _lookup(g: Small, ids: object, rows: int, name: str) -> object:
    return g.op("embedding", g.param(name, np.zeros((rows, 4), np.float32)), ids)


def test_ids_traced_through_cast_transpose_and_nested_slices() -> None:
    g = Small()
    ids = g.input("ids", 3, 4, dtype="int32")
    wide = g.op("cast", ids, dtype="int64")  # value preserving: traced
    moved = g.op("permute", wide, perm=(0, 2, 1))  # [B, 4, 3]
    inner = g.op("slice", g.op("slice", moved, axis=2, start=1, end=3), axis=2, start=1, end=2)  # column 2
    a = _lookup(g, inner, 7, "a")
    b = _lookup(g, g.op("slice", ids, axis=1, start=0, end=2), 9, "b")  # int32 ids read directly
    graph = g.returns(a, b)
    assert trace_ids(inner)[0] is ids and trace_ids(inner)[1] == (1, 2, 3)
    checks = id_checks(graph)
    assert checks.ids == {"ids": (IdLimit(1, 2, 3, 7), IdLimit(1, 0, 2, 9))} and not checks.unchecked


def test_narrowing_casts_and_arithmetic_are_not_traced() -> None:
    g = Small()
    ids = g.input("ids", dtype="int64")
    narrow = g.op("cast", ids, dtype="int32")  # int64 -> int32 changes large values
    computed = g.op("add", g.op("mul", ids, g.param("two", np.array([2]))), g.param("one", np.array([1])))
    graph = g.returns(_lookup(g, narrow, 5, "a"), _lookup(g, computed, 5, "b"))
    assert trace_ids(narrow) == (None, None) and trace_ids(computed) == (None, None)
    assert id_checks(graph) == IdChecks({}, (), (graph.outputs[0].name, graph.outputs[1].name))


def test_whole_and_sliced_uses_keep_each_tables_bound() -> None:
    """One ids input used whole for one table and sliced for another: each column keeps its own bound
    (the whole-input limit becomes a limit on the sliced axis's full range), not the smallest table's."""
    g = Small()
    ids = g.input("ids", 2, dtype="int64")
    first = _lookup(g, g.op("slice", ids, axis=1, start=0, end=1), 10, "small")
    whole = _lookup(g, ids, 100, "big")
    checks = id_checks(g.returns(first, whole))
    assert checks.ids == {"ids": (IdLimit(1, 0, 1, 10), IdLimit(1, 0, 2, 100))}


def test_take_limits_record_wrap() -> None:
    _, graph = _take(wrap=True)
    assert id_checks(graph).ids == {"ids": (IdLimit(None, None, None, 10, True),)}
    assert IdChecks.from_json(id_checks(graph).to_json()) == id_checks(graph)


def test_gather_reads_like_torch_gather() -> None:
    g = Small()
    x, ids = g.input("x", 5), g.input("ids", 2, dtype="int64")
    graph = g.returns(g.op("gather", x, ids, axis=1))
    data = np.arange(15, dtype=np.float32).reshape(3, 5)
    out, = interpret(graph, [data, np.array([[0, 4], [1, 1], [3, 2]])])
    np.testing.assert_array_equal(out, [[0, 4], [6, 6], [13, 12]])
    for bad in (-1, 5):
        with pytest.raises(IndexError):
            interpret(graph, [data, np.array([[0, bad], [1, 1], [3, 2]])])
    assert id_checks(graph).ids == {"ids": (IdLimit(None, None, None, 5),)}
