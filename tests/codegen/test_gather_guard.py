"""The lowering emits no gather whose indices nothing checks (lowering/checks.py guarded_args).

Lowering only (no library is built): a gather on computed ids gets a check kernel right before it; one on
an input the function checks first gets none; constant indices are checked at compile time; and a gather
lowering that bypasses guarded_args, or a gather along a symbolic dim, is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from recc.compiler.codegen.tvm.lowering import driver
from recc.compiler.codegen.tvm.lowering.checks import UncheckedGatherError
from recc.compiler.input_checks import id_checks
from tests.passes.graphs import Small
from tvm import relax

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
