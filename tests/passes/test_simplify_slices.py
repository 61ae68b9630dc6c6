"""simplify-slices: merges adjacent slices under a concat, drops whole-axis slices; declines gaps, reordered
slices and slices of different values; idempotent; numbers kept."""

from __future__ import annotations

import numpy as np
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, Value, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.passes.simplify_slices import SimplifySlices


def _graph(bounds: list[tuple[int, int]], second_source: bool = False) -> tuple[Graph, list[Value]]:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 12), "float32"))
    y = g.add_input("y", TensorType((sym("batch"), 12), "float32"))
    parts = [g.add_node("slice", [y if second_source and i == 1 else x],
                        {"axis": 1, "start": s, "end": e, "step": 1}).output for i, (s, e) in enumerate(bounds)]
    g.outputs = [g.add_node("relu", [g.add_node("concat", parts, {"axis": 1}).output]).output]
    return g, [x, y]


def _numbers(g: Graph) -> np.ndarray:
    rng = np.random.default_rng(0)
    return interpret(g, [rng.random((3, 12), dtype=np.float32), rng.random((3, 12), dtype=np.float32)])[0]


def test_adjacent_slices_become_one_view_of_the_whole() -> None:
    g, _ = _graph([(0, 4), (4, 8), (8, 12)])
    want = _numbers(g)
    stats = SimplifySlices().run(g, PassContext())
    verify(g)
    assert stats.rewrites == {"concat-of-adjacent-slices": 1, "whole-slice": 1}
    assert g.op_histogram() == {"relu": 1} and g.nodes[0].inputs[0] is g.inputs[0]
    np.testing.assert_array_equal(_numbers(g), want)
    assert SimplifySlices().run(g, PassContext()).rewrites == {}


def test_partial_runs_merge_and_the_rest_stays() -> None:
    g, _ = _graph([(0, 4), (4, 6), (8, 12)])  # a gap between 6 and 8
    want = _numbers(g)
    stats = SimplifySlices().run(g, PassContext())
    assert stats.rewrites == {"concat-of-adjacent-slices": 1}
    assert g.op_histogram() == {"slice": 2, "concat": 1, "relu": 1}
    np.testing.assert_array_equal(_numbers(g), want)


def test_declines_reordered_slices_and_other_sources() -> None:
    for bounds, second in (([(4, 8), (0, 4)], False), ([(0, 4), (4, 8)], True)):
        g, _ = _graph(bounds, second_source=second)
        stats = SimplifySlices().run(g, PassContext())
        assert stats.rewrites == {} and g.op_histogram() == {"slice": 2, "concat": 1, "relu": 1}


def _stack(bounds: list[tuple[int, int]]) -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType((sym("batch"), 12), "float32"))
    g.add_input("y", TensorType((sym("batch"), 12), "float32"))
    parts = []
    for s, e in bounds:
        piece = g.add_node("slice", [x], {"axis": 1, "start": s, "end": e, "step": 1}).output
        parts.append(g.add_node("reshape", [piece], {"shape": (sym("batch"), 1, e - s)}).output)
    g.outputs = [g.add_node("relu", [g.add_node("concat", parts, {"axis": 1}).output]).output]
    return g


def test_stack_of_adjacent_equal_slices_becomes_one_reshaped_slice() -> None:
    g = _stack([(2, 5), (5, 8), (8, 11)])  # DIEN's behaviour embeddings: torch.stack of per-table lookups
    want = _numbers(g)
    stats = SimplifySlices().run(g, PassContext())
    verify(g)
    assert stats.rewrites == {"stack-of-adjacent-slices": 1}
    assert g.op_histogram() == {"slice": 1, "reshape": 1, "relu": 1}
    np.testing.assert_array_equal(_numbers(g), want)
    assert SimplifySlices().run(g, PassContext()).rewrites == {}


def test_stack_declines_gaps_and_reordered_slices() -> None:
    for bounds in ([(0, 3), (4, 7)], [(3, 6), (0, 3)]):
        g = _stack(bounds)
        assert SimplifySlices().run(g, PassContext()).rewrites == {}
        assert g.op_histogram() == {"slice": 2, "reshape": 2, "concat": 1, "relu": 1}
