"""The IR: symbolic dims, type inference, the verifier's checks, the deterministic printer."""

from __future__ import annotations

import numpy as np
import pytest

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, IRTypeError, Sym, TensorType, VerificationError, print_graph, sym, verify
from recc.compiler.ir.types import dim_div, dim_mul


def small_graph() -> Graph:
    g = Graph("t")
    x = g.add_input("x", TensorType((sym("batch"), 4), "float32"))
    w = g.add_param("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    d = g.add_node("dense", [x, w], {"activation": "relu"}).output
    r = g.add_node("reshape", [d], {"shape": (-1,)}).output
    g.outputs = [r]
    return g


def test_symbolic_dims_multiply_and_divide() -> None:
    b = sym("batch")
    assert dim_mul(b, 80) == Sym(("batch",), 80)
    assert str(dim_mul(80, b)) == "80*batch"
    assert dim_div(Sym(("batch",), 80), 80) == b
    assert dim_div(Sym(("batch",), 80), b) == 80
    assert dim_div(b, 3) is None


def test_type_inference_through_reshape_with_symbolic_batch() -> None:
    g = small_graph()
    assert str(g.outputs[0].type) == "float32[3*batch]"
    verify(g)


def test_type_errors_are_clear() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 4), "float32"))
    w = g.add_param("w", np.zeros((3, 5), np.float32))
    with pytest.raises(IRTypeError, match="inner dims differ"):
        g.add_node("dense", [x, w])
    with pytest.raises(IRTypeError, match="unknown op"):
        g.add_node("frobnicate", [x])


def test_verifier_catches_dangling_value_and_wrong_type() -> None:
    g = small_graph()
    dense = g.nodes[0]
    dense.outputs[0].type = TensorType((sym("batch"), 5), "float32")
    with pytest.raises(VerificationError, match="recorded type"):
        verify(g)
    g = small_graph()
    g.nodes.reverse()  # uses before definition: what a cycle or bad splice looks like
    with pytest.raises(VerificationError, match="not defined before use"):
        verify(g)


def test_printer_is_deterministic_and_shows_types() -> None:
    a, b = print_graph(small_graph()), print_graph(small_graph())
    assert a == b
    assert "dense(%x, %w) {activation=\"relu\"}" in a and "float32[batch, 3]" in a


def test_remove_dead_and_clone() -> None:
    g = small_graph()
    x = g.inputs[0]
    g.add_node("relu", [x])  # dead
    clone = g.clone()
    assert g.remove_dead() == 1
    assert len(clone.nodes) == 3 and len(g.nodes) == 2
    out = interpret(g, [np.ones((2, 4), np.float32)])[0]
    np.testing.assert_allclose(out, np.maximum(np.ones((2, 4)) @ np.arange(12).reshape(3, 4).T, 0).reshape(-1))
