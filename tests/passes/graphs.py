"""Small IR graphs for pass tests, built directly (no torch capture, no TVM), and the checks every pass
test makes: run the passes, verify, and compare the graph's function with the reference interpreter."""

from __future__ import annotations

from typing import Any

import numpy as np

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, Value, sym, verify
from recc.compiler.pass_manager import PassContext, PassStats

BATCH = sym("batch")


class Small:
    """A graph under construction: `x = g.input("x", 5)` is float32 [batch, 5]; `g.op("relu", x)`."""

    def __init__(self) -> None:
        self.graph = Graph("test")

    def input(self, name: str, *dims: Any, dtype: str = "float32") -> Value:
        return self.graph.add_input(name, TensorType((BATCH, *dims), dtype))

    def const(self, value: float | np.ndarray, shape: tuple[int, ...] = (1,), name: str = "c") -> Value:
        array = np.asarray(value, np.float32)
        return self.graph.add_param(name, array if array.ndim else np.full(shape, array, np.float32))

    def param(self, name: str, array: np.ndarray) -> Value:
        return self.graph.add_param(name, array)

    def op(self, op: str, *inputs: Value, **attrs: Any) -> Value:
        return self.graph.add_node(op, list(inputs), attrs).output

    def returns(self, *values: Value) -> Graph:
        self.graph.outputs = list(values)
        verify(self.graph)
        return self.graph


def run(graph: Graph, *passes: Any) -> PassStats:
    """Run `passes` in order (verifying after each); their rewrites and rejects summed."""
    total = PassStats()
    for p in passes:
        stats = p.run(graph, PassContext())
        verify(graph)
        for rule, n in stats.rewrites.items():
            total.rewrote(rule, n)
        for key, n in stats.rejects.items():
            total.rejects[key] = total.rejects.get(key, 0) + n
    return total


def inputs_for(graph: Graph, batch: int, seed: int = 0, high: int = 5) -> list[np.ndarray]:
    """Random inputs: floats in [-2, 2], integers in [0, high)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in graph.inputs:
        shape = v.type.bind({"batch": batch})
        if v.type.dtype.startswith("int"):
            arrays.append(rng.integers(0, high, shape).astype(v.type.dtype))
        else:
            arrays.append(rng.uniform(-2, 2, shape).astype(v.type.dtype))
    return arrays


def assert_same_function(before: Graph, after: Graph, batches: tuple[int, ...] = (1, 3), atol: float = 1e-5,
                         high: int = 5) -> None:
    """`after` computes what `before` did (reference interpreter, fp32 tolerance)."""
    for batch in batches:
        inputs = inputs_for(before, batch, seed=batch, high=high)
        for want, got in zip(interpret(before, inputs), interpret(after, inputs), strict=True):
            assert want.shape == got.shape
            np.testing.assert_allclose(got, want, atol=atol, rtol=0)
