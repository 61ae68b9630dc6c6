"""The optimized graph as JSON (graph.json in an artifact): structure and types, no weight values.

    {"name", "inputs": [{"name", "dtype", "shape"}], "params": [...same...],
     "nodes": [{"op", "inputs": [names], "outputs": [{"name", "dtype", "shape"}], "attrs": {...}, "origin"}],
     "outputs": [names]}

Symbolic dims are written as their text ("batch", "80*batch"). Used by `recc export-onnx`; the runtime does
not need it (it runs lib.so).
"""

from __future__ import annotations

from typing import Any

from recc.compiler.ir.graph import Graph, Value


def _dim(d: Any) -> Any:
    return d if isinstance(d, int) else str(d)


def _value(v: Value) -> dict[str, Any]:
    return {"name": v.name, "dtype": v.type.dtype, "shape": [_dim(d) for d in v.type.shape]}


def _attr(a: Any) -> Any:
    if isinstance(a, (bool, int, float, str)) or a is None:
        return a
    if isinstance(a, (list, tuple)):
        return [_attr(x) for x in a]
    return str(a)


def graph_to_json(graph: Graph) -> dict[str, Any]:
    return {
        "name": graph.name,
        "inputs": [_value(v) for v in graph.inputs],
        "params": [_value(v) for v in graph.param_values.values()],
        "nodes": [{"op": n.op, "inputs": [v.name for v in n.inputs], "outputs": [_value(v) for v in n.outputs],
                   "attrs": {k: _attr(a) for k, a in n.attrs.items() if not k.startswith("_")}, "origin": n.origin}
                  for n in graph.nodes],
        "outputs": [v.name for v in graph.outputs],
    }
