"""A deterministic text form of a graph: the same graph always prints the same text."""

from __future__ import annotations

from typing import Any

import numpy as np

from recc.compiler.ir.graph import Graph, Value


def _attr(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_attr(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _param_line(value: Value, array: np.ndarray) -> str:
    line = f"  param %{value.name}: {value.type}"
    if array.size <= 8:
        line += " = " + np.array2string(np.asarray(array).reshape(-1), separator=", ")
    return line


def print_graph(graph: Graph, origins: bool = False) -> str:
    sig = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    lines = [f"graph {graph.name}({sig}) {{"]
    for name in sorted(graph.param_values):
        lines.append(_param_line(graph.param_values[name], graph.params[name]))
    for node in graph.nodes:
        outs = ", ".join(f"%{v.name}: {v.type}" for v in node.outputs)
        args = ", ".join(f"%{v.name}" for v in node.inputs)
        attrs = ", ".join(f"{k}={_attr(node.attrs[k])}" for k in sorted(node.attrs))
        line = f"  {outs} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "")
        if origins and node.origin:
            line += f"  # {node.origin}"
        lines.append(line)
    lines.append("  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"
