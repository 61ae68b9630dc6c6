"""The lowering emits no gather whose indices nothing checks (lowering/checks.py guarded_args).

Lowering only (no library is built): a gather on computed ids gets a check kernel right before it; one on
an input the function checks first gets none; constant indices are checked at compile time; and a gather
lowering that bypasses guarded_args, or a gather along a symbolic dim, is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

from recc.compiler.codegen.tvm.lowering import driver
from recc.compiler.codegen.tvm.lowering.checks import UncheckedGatherError
from recc.compiler.input_checks import id_checks
from tests.passes.graphs import Small

TABLE = np.zeros((10, 4), np.float32)


def _graph(computed: bool, wrap: bool = True):
    g = Small()
    ids = g.input("ids", dtype="int64")
    if computed:
        ids = g.op("add", ids, g.param("one", np.array([1])))
    return g.returns(g.op("take", g.param("w", TABLE), ids, axis=0, wrap=wrap))


def _lower(graph):
    return driver.lower(graph, id_limits=id_checks(graph).ids)


def test_computed_ids_get_a_check_before_the_gather() -> None:
    lowered = _lower(_graph(computed=True))
    assert lowered.kernels == {"check_ids": 1} and lowered.checked_inputs == []


def test_input_ids_checked_first_need_no_second_check() -> None:
    g = Small()
    ids = g.input("ids", dtype="int64")
    graph = g.returns(g.op("embedding", g.param("w", TABLE), ids))
    lowered = _lower(graph)
    assert lowered.checked_inputs == ["ids"] and lowered.kernels["check_ids"] == 1


def test_constant_indices_are_checked_when_lowered() -> None:
    g = Small()
    x = g.input("x", 10)
    graph = g.returns(g.op("take", x, g.param("idx", np.array([0, 10])), axis=1))
    with pytest.raises(ValueError, match="constant index out of range"):
        _lower(graph)


def test_a_gather_along_a_symbolic_dim_is_refused() -> None:
    g = Small()
    x, ids = g.input("x", 4), g.input("ids", dtype="int64")
    graph = g.returns(g.op("take", x, ids, axis=0))
    with pytest.raises(UncheckedGatherError, match="symbolic"):
        _lower(graph)


def test_a_lowering_that_skips_the_guard_is_refused(monkeypatch) -> None:
    def unguarded(lw, node):
        return lw.emit(relax.op.take(*lw.args(node), axis=0, mode="clip"))

    monkeypatch.setitem(driver.LOWERINGS, "take", unguarded)
    with pytest.raises(UncheckedGatherError, match="did not range-check"):
        _lower(_graph(computed=True))


def _batched_over_concat(big_rows: int):
    """Two ids inputs (checked first against tables of 5 and 9 rows), concatenated for one batched lookup
    whose second table has `big_rows` rows."""
    g = Small()
    a, b = g.input("a", 1, dtype="int64"), g.input("b", 2, dtype="int64")
    small_a = g.op("embedding_bag", g.param("ta", np.zeros((5, 4), np.float32)), a, mode="sum", layout="fixed")
    small_b = g.op("embedding_bag", g.param("tb", np.zeros((9, 4), np.float32)), b, mode="sum", layout="fixed")
    ids = g.op("concat", a, b, axis=1)
    weights = g.param("flat", np.zeros(5 * 4 + big_rows * 4, np.float32))
    batched = g.op("batched_embedding_bag", weights, ids, table_rows=[5, big_rows], table_dims=[4, 4],
                   bag_sizes=[1, 2], id_cols=[0, 1], mode="sum")
    return g.returns(small_a, small_b, batched)


@pytest.mark.parametrize("big_rows, extra_checks", [(9, 0), (20, 0), (7, 1)])
def test_batched_lookup_over_concatenated_inputs(big_rows: int, extra_checks: int) -> None:
    """Covered by the inputs' own checks when its tables are at least as large (DIN, DIEN); checked again
    right before it when a table is smaller than the one the input was checked for."""
    lowered = _lower(_batched_over_concat(big_rows))
    assert lowered.checked_inputs == ["a", "b"]
    assert lowered.kernels["check_ids"] == 2 + extra_checks
