"""The lowering context: what lowering one graph carries from op to op (shape symbols, the Relax
expression of every value, the weights in the order the functions take them, the kernels added so far)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax
from tvm import tirx as tir

from recc.compiler.artifact import IdLimit
from recc.compiler.codegen.tvm.kernels.cpu.common import ROWS, VECTOR
from recc.compiler.ir import Graph, Node, Value
from recc.compiler.ir.types import Dim

INLINE_CONSTANT_LIMIT = 64  # elements; larger parameters are runtime arguments


class LoweringContext:
    """Lowering state for one graph: the module being built (`bb`), and for the function being emitted
    the shape symbols and each value's expression. Kernels, packed weights and the weight order are
    shared by every function of the module."""

    def __init__(self, graph: Graph, tuner: Any = None, id_limits: dict[str, tuple[IdLimit, ...]] | None = None,
                 dense_tile: tuple[int, int] = (ROWS, VECTOR), target: Any = None) -> None:
        self.graph = graph
        self.target = target  # target.TargetSpec (None: a generic CPU; no int8 or AMX kernels)
        self.tuner = tuner
        self.dense_tile = dense_tile
        self.id_limits = id_limits or {}
        self.checked_inputs: list[str] = []
        # per function: input -> (axis, uint64 bounds, shift) its first check enforces; gathers whose indices
        # were proven or checked (lowering/checks.py guarded_args)
        self.input_bounds: dict[str, tuple[int | None, np.ndarray, int]] = {}
        self.guarded: set[int] = set()
        self.bb = relax.BlockBuilder()
        self.symbols: dict[str, Any] = {}  # shape symbol -> tir.Var, or an IntImm where specialized
        self.exprs: dict[int, relax.Expr] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.weight_by_name: dict[str, relax.Var] = {}
        self.kernel_cache: dict[tuple[Any, ...], Any] = {}
        self.kernels: dict[str, int] = {}
        self.counting = True  # kernel counts and checked inputs are reported for "main" only

    def start_function(self, static: dict[str, int]) -> None:
        """A new function: shape symbols in `static` are constants in it; no value lowered yet."""
        self.symbols = {sym: tir.IntImm("int64", value) for sym, value in static.items()}
        self.exprs, self.weight_by_name = {}, {}
        self.input_bounds, self.guarded = {}, set()

    # -- shapes -------------------------------------------------------------------------------------
    def dim(self, d: Dim) -> Any:
        if isinstance(d, int):
            return tir.IntImm("int64", d)
        expr: Any = tir.IntImm("int64", d.coef)
        for name in d.names:
            if name not in self.symbols:
                self.symbols[name] = tir.Var(name, "int64")
            expr = expr * self.symbols[name]
        return expr

    def product(self, dims: list[Dim] | tuple[Dim, ...]) -> Any:
        """The product of dims, e.g. the rows of a tensor viewed as 2-D (1 for none: a 0-d tensor)."""
        if not dims:
            return tir.IntImm("int64", 1)
        expr = self.dim(dims[0])
        for d in dims[1:]:
            expr = expr * self.dim(d)
        return expr

    def struct(self, value: Value) -> relax.TensorType:
        return relax.TensorType([self.dim(d) for d in value.type.shape], value.type.dtype)

    # -- weights and values -------------------------------------------------------------------------
    def weight(self, name: str, make: Callable[[], np.ndarray]) -> relax.Var:
        """The runtime argument `name`, created once: a weight shared by several nodes (an RNN cell
        unrolled over time steps) is packed and passed once."""
        if name not in self.weight_by_name:
            array = self.weights[name] if name in self.weights else make()  # packed once for all functions
            var = relax.Var(name, relax.TensorType(list(array.shape), str(array.dtype)))
            self.weights[name] = array
            self.weight_by_name[name] = var
        return self.weight_by_name[name]

    def expr(self, value: Value) -> relax.Expr:
        """A parameter's expression: a constant if tiny, else a weight argument."""
        key = id(value)
        if key not in self.exprs:
            array = self.graph.param_array(value)
            assert array is not None, f"value %{value.name} used before definition"
            if array.size <= INLINE_CONSTANT_LIMIT:
                self.exprs[key] = relax.const(np.asarray(array), str(array.dtype))
            else:
                self.exprs[key] = self.weight(value.name, lambda: array)
        return self.exprs[key]

    def value(self, value: Value) -> relax.Expr:
        """Any value's expression: a parameter's (see expr), or the one lowered for it."""
        return self.expr(value) if value.kind == "param" else self.exprs[id(value)]

    def args(self, node: Node) -> list[relax.Expr]:
        return [self.value(v) for v in node.inputs]

    # -- emission -----------------------------------------------------------------------------------
    def kernel(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """The kernel for `key` (its family first), added to the module once."""
        if key not in self.kernel_cache:
            self.kernel_cache[key] = self.bb.add_func(make(), f"{key[0]}_{len(self.kernel_cache)}")
        if self.counting:
            self.kernels[key[0]] = self.kernels.get(key[0], 0) + 1
        return self.kernel_cache[key]

    def emit(self, expr: relax.Expr) -> relax.Expr:
        return self.bb.emit(expr)
