"""The IR's value queries (producer_op, single_user, constant_scalar, is_zero), the view tracer, and the
use-list edits passes go through (redirect, replace_output)."""

from __future__ import annotations

import numpy as np

from recc.compiler.interpreter import constant_value
from recc.compiler.ir import (
    Graph,
    TensorType,
    constant_scalar,
    is_zero,
    producer_op,
    single_user,
    sym,
    trace_view,
    verify,
)


def _graph() -> tuple[Graph, object]:
    g = Graph()
    return g, g.add_input("x", TensorType((sym("batch"), 6), "float32"))


def test_producer_op_matches_one_op_or_a_tuple() -> None:
    g, x = _graph()
    r = g.add_node("relu", [x]).output
    assert producer_op(r, "relu") is r.producer
    assert producer_op(r, ("tanh", "relu")) is r.producer
    assert producer_op(r, "tanh") is None
    assert producer_op(x, "relu") is None  # an input has no producer


def test_single_user_excludes_a_second_reader_and_graph_outputs() -> None:
    g, x = _graph()
    r = g.add_node("relu", [x]).output
    t = g.add_node("tanh", [r]).output
    g.outputs = [t]
    assert single_user(g, r)
    g.add_node("sigmoid", [r])
    assert not single_user(g, r)
    g.outputs = [t, r]
    assert not single_user(g, t) and not single_user(g, r)


def test_constant_scalar_reads_one_element_constants() -> None:
    g, x = _graph()
    assert constant_scalar(g, g.add_param("a", np.full((1, 1), 2.5, np.float32))) == 2.5
    assert constant_scalar(g, g.add_param("b", np.ones(3, np.float32))) is None  # not one element
    assert constant_scalar(g, x) is None  # an input
    expr = g.add_node("neg", [g.add_param("c", np.full(1, 4.0, np.float32))]).output
    assert constant_scalar(g, expr) is None  # an expression: only with an evaluator
    assert constant_scalar(g, expr, constant_value) == -4.0


def test_is_zero_sees_through_expand_and_reshape() -> None:
    g, x = _graph()
    zero = g.add_param("z", np.zeros((1, 1), np.float32))
    assert is_zero(g, zero)
    assert is_zero(g, g.add_node("expand", [zero], {"shape": (3, 6)}).output)
    assert is_zero(g, g.add_node("reshape", [zero], {"shape": (1,)}).output)
    assert not is_zero(g, g.add_param("one", np.ones(1, np.float32)))
    assert not is_zero(g, g.add_node("relu", [zero]).output)  # computed: not a view of the constant


def test_trace_view_follows_reshapes_and_slices_to_their_source() -> None:
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("batch"), 3, 4), "int64"))
    column = g.add_node("slice", [ids], {"axis": 1, "start": 1, "end": 2, "step": 1}).output
    flat = g.add_node("reshape", [column], {"shape": (sym("batch"), 4)}).output
    source, views = trace_view(flat)
    assert source is ids and [n.op for n in views] == ["reshape", "slice"]  # nearest first
    assert trace_view(ids) == (ids, [])
    computed = g.add_node("cast", [flat], {"dtype": "int32"}).output
    assert trace_view(computed) == (computed, [])  # a cast is no view


def test_trace_view_stops_where_asked() -> None:
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("batch"), 3, 4), "int64"))
    column = g.add_node("slice", [ids], {"axis": 1, "start": 1, "end": 2, "step": 1}).output
    flat = g.add_node("reshape", [column], {"shape": (sym("batch"), 4)}).output
    source, views = trace_view(flat, stop=lambda node: node.op == "slice")
    assert source is column and [n.op for n in views] == ["reshape"]
    assert trace_view(flat, ops=("slice",)) == (flat, [])


def test_redirect_moves_only_the_given_readers() -> None:
    g, x = _graph()
    a, b = g.add_node("relu", [x]).output, g.add_node("tanh", [x]).output
    twice = g.add_node("mul", [a, a])
    once = g.add_node("sigmoid", [a])
    g.outputs = [twice.output, once.output, a]
    g.redirect(a, b, [twice])
    assert twice.inputs == [b, b] and once.inputs == [a]
    assert a.users == [once] and b.users == [twice, twice]
    assert g.outputs[2] is a  # outputs only move with replace_output
    g.replace_output(a, b)
    assert g.outputs[2] is b
    verify(g)
