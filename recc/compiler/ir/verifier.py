"""Structural and type checks of a graph: every pass's output must pass them."""

from __future__ import annotations

from recc.compiler.ir.graph import Graph
from recc.compiler.ir.ops import IRTypeError, infer_types


class VerificationError(ValueError):
    pass


def verify(graph: Graph) -> None:
    """Raise VerificationError naming the first problem: a dangling value, a cycle or out-of-order
    node, a use list out of sync, or a type that does not follow from the op's rule."""
    defined: set[int] = {id(v) for v in graph.inputs} | {id(v) for v in graph.param_values.values()}
    for name, value in graph.param_values.items():
        if name not in graph.params:
            raise VerificationError(f"param %{name} has no array")
        if tuple(graph.params[name].shape) != value.type.shape:
            raise VerificationError(f"param %{name}: array shape {graph.params[name].shape} != {value.type}")
    seen_nodes: set[int] = set()
    for node in graph.nodes:
        if id(node) in seen_nodes:
            raise VerificationError(f"node {node.op} appears twice")
        seen_nodes.add(id(node))
        for v in node.inputs:
            if id(v) not in defined:
                raise VerificationError(
                    f"{node.op} -> %{node.outputs[0].name}: input %{v.name} is not defined before use "
                    "(dangling value or cycle)")
            if not any(u is node for u in v.users):
                raise VerificationError(f"%{v.name} does not list {node.op} among its users")
        try:
            types = infer_types(node.op, [v.type for v in node.inputs], node.attrs)
        except IRTypeError as e:
            raise VerificationError(f"%{node.outputs[0].name}: {e}") from e
        if len(types) != len(node.outputs):
            raise VerificationError(f"{node.op}: {len(node.outputs)} outputs, rule says {len(types)}")
        for t, v in zip(types, node.outputs):
            if t != v.type:
                raise VerificationError(f"%{v.name}: recorded type {v.type} but {node.op} gives {t}")
            if v.producer is not node:
                raise VerificationError(f"%{v.name}: producer link broken")
            defined.add(id(v))
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerificationError(f"output %{v.name} is not defined")
    if not graph.outputs:
        raise VerificationError("graph has no outputs")
