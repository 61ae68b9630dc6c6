"""simplify-reshapes and eliminate-dead-nodes on tiny graphs."""

from __future__ import annotations

import numpy as np

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.passes.eliminate_dead_nodes import EliminateDeadNodes
from recc.passes.simplify_reshapes import SimplifyReshapes


def test_merges_reshape_chains_and_drops_identity() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 2, 3), "float32"))
    a = g.add_node("reshape", [x], {"shape": (sym("batch"), 6)}).output
    b = g.add_node("reshape", [a], {"shape": (sym("batch"), 3, 2)}).output
    c = g.add_node("reshape", [b], {"shape": (sym("batch"), 2, 3)}).output  # back to x's shape
    g.outputs = [g.add_node("relu", [c]).output]
    data = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    before = interpret(g, [data])[0]
    stats = SimplifyReshapes().run(g, PassContext())
    verify(g)
    assert g.op_histogram() == {"relu": 1}
    assert sum(stats.rewrites.values()) >= 2
    np.testing.assert_array_equal(interpret(g, [data])[0], before)
    assert SimplifyReshapes().run(g, PassContext()).rewrites == {}


def test_output_reshape_is_kept() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 6), "float32"))
    g.outputs = [g.add_node("reshape", [x], {"shape": (sym("batch"), 6)}).output]
    SimplifyReshapes().run(g, PassContext())
    assert g.op_histogram() == {"reshape": 1}


def test_eliminate_dead_nodes_counts_nodes_and_params() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 3), "float32"))
    w = g.add_param("unused_w", np.ones((2, 3), np.float32))
    g.add_node("dense", [x, w])
    g.outputs = [g.add_node("relu", [x]).output]
    stats = EliminateDeadNodes().run(g, PassContext())
    assert stats.rewrites == {"dead-node": 1, "dead-param": 1}
    assert g.op_histogram() == {"relu": 1} and not g.params


def test_composes_permutes_and_drops_identities() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 2, 3), "float32"))
    a = g.add_node("permute", [x], {"perm": (1, 0, 2)}).output  # [2, batch, 3]
    b = g.add_node("permute", [a], {"perm": (2, 1, 0)}).output  # [3, batch, 2] = x axes (2, 0, 1)
    c = g.add_node("permute", [b], {"perm": (1, 2, 0)}).output  # back to [batch, 2, 3]
    d = g.add_node("permute", [x], {"perm": (0, 2, 1)}).output
    g.outputs = [g.add_node("relu", [c]).output, g.add_node("relu", [d]).output]
    data = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    before = interpret(g, [data])
    stats = SimplifyReshapes().run(g, PassContext())
    verify(g)
    assert stats.rewrites.get("permute-of-permute", 0) >= 2
    assert g.op_histogram() == {"relu": 2, "permute": 1}  # the cancelling chain is gone; (0, 2, 1) stays
    for got, want in zip(interpret(g, [data]), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert SimplifyReshapes().run(g, PassContext()).rewrites == {}
