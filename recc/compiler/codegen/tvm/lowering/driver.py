"""The lowering driver: lower() emits the Relax functions of a graph, node by node, through the lowering
registered for each op (OP_MODULES), Relax operators for the rest (generic.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import tvm
from tvm import relax

from recc.compiler.artifact import IdLimit
from recc.compiler.codegen.tvm.kernels.cpu.common import ROWS, VECTOR
from recc.compiler.codegen.tvm.lowering import (attention, dense, embedding, interaction, math, recurrent, sort,
                                                  window)
from recc.compiler.codegen.tvm.lowering.checks import UncheckedGatherError, check_ids
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.lowering.generic import lower_generic
from recc.compiler.input_checks import GATHER_OPS
from recc.compiler.ir import Graph, Node

# The ops that get recc kernels: each module's LOWERINGS table (op -> lowering); any other op goes
# through lower_generic.
OP_MODULES = (dense, embedding, interaction, attention, recurrent, math, sort, window)


def _registry() -> dict[str, Callable[[LoweringContext, Node], relax.Expr]]:
    table: dict[str, Callable[[LoweringContext, Node], relax.Expr]] = {}
    for module in OP_MODULES:
        for op, fn in module.LOWERINGS.items():
            assert op not in table, f"op {op!r} has two lowerings ({module.__name__})"
            table[op] = fn
    return table


LOWERINGS = _registry()


@dataclass
class Lowered:
    module: tvm.IRModule
    weight_names: list[str]
    weights: dict[str, np.ndarray]
    kernels: dict[str, int] = field(default_factory=dict)  # which kernel families were used, for reports
    checked_inputs: list[str] = field(default_factory=list)  # ids inputs range-checked inside the function
    # functions besides "main" specialized to static values of the shape symbols,
    # e.g. {"main_b1": {"batch": 1}}
    specialized: dict[str, dict[str, int]] = field(default_factory=dict)


def lower(graph: Graph, tuner: Any = None, id_limits: dict[str, tuple[IdLimit, ...]] | None = None,
          specialize: dict[str, dict[str, int]] | None = None,
          dense_tile: tuple[int, int] = (ROWS, VECTOR), target: Any = None) -> Lowered:
    """`tuner` (tuning.Tuner): schedule parameters remembered in a tuning database, or searched now.
    `id_limits` (input_checks.id_checks().ids): the ids inputs to range-check inside the function.
    `specialize`: more functions beside "main", each with some shape symbols fixed, e.g.
    {"main_b1": {"batch": 1}} (see batch_one_bucket). `dense_tile`: the dense kernels' register tile
    (rows, vector) for the target (kernels/cpu/dense.py register_tile). `target` (target.TargetSpec): its
    features choose the reduced-precision kernels."""
    lw = LoweringContext(graph, tuner, id_limits, dense_tile, target)
    emit_function(lw, "main", {})
    lw.counting = False
    for name, values in (specialize or {}).items():
        emit_function(lw, name, values)
    return Lowered(lw.bb.get(), list(lw.weights), lw.weights, lw.kernels, lw.checked_inputs,
                   dict(specialize or {}))


def emit_function(lw: LoweringContext, name: str, static: dict[str, int]) -> None:
    """Emit one Relax function of the graph: shape symbols in `static` are constants in it (a static
    shape lets the VM skip shape arithmetic and plan memory once: batch 1 runs 1.5-12 us faster), the
    others symbolic. Kernels and packed weights are shared between functions; every function takes
    the weights in the same order."""
    graph = lw.graph
    lw.start_function(static)
    inputs = []
    for v in graph.inputs:
        var = relax.Var(v.name, lw.struct(v))
        lw.exprs[id(v)] = var
        inputs.append(var)
    # Weights are discovered while lowering; the function's parameter list is closed afterwards.
    with lw.bb.function(name):
        with lw.bb.dataflow():
            for v in graph.inputs:
                check_ids(lw, v)
            for node in graph.nodes:
                lw.exprs[id(node.output)] = LOWERINGS.get(node.op, lower_generic)(lw, node)
                if node.op in GATHER_OPS and id(node) not in lw.guarded:  # its indices were never checked
                    raise UncheckedGatherError(f"codegen: the lowering of {node.op} %{node.output.name} "
                                               "did not range-check its indices (lowering/checks.py guarded_args)")
            results = [lw.value(v) for v in graph.outputs]
            result = results[0] if len(results) == 1 else relax.Tuple(results)
            gv = lw.bb.emit_output(result)
        # every function takes all weights, in the order "main" discovered them
        weights = [lw.weight(w, lambda: lw.weights[w]) for w in list(lw.weights)]
        lw.bb.emit_func_output(gv, params=inputs + weights)


def batch_one_bucket(graph: Graph) -> dict[str, dict[str, int]]:
    """{"main_b1": {symbol: 1}} when the inputs' shapes have exactly one symbol (the batch), else {}."""
    symbols = {name for v in graph.inputs for d in v.type.shape if not isinstance(d, int) for name in d.names}
    return {"main_b1": {symbols.pop(): 1}} if len(symbols) == 1 else {}
