"""The graph: values, nodes, parameters held outside the graph, and the editing primitives passes use.

A `Value` is produced by a graph input, a parameter, or a node output. Nodes are kept in a list in
topological order; editing goes through `Graph.add_node`, `replace_all_uses` (or `redirect`) and `remove_dead`, which keep
the use lists consistent. Parameters (weights, embedding tables, constants) live in `Graph.params` as
numpy arrays (possibly memory-mapped), never inside nodes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from recc.compiler.ir.spill import SPILL_BYTES, stream_npy
from recc.compiler.ir.types import TensorType, dtype_of_array


@dataclass(eq=False)
class Value:
    name: str
    type: TensorType
    kind: str  # "input" | "param" | "node"
    producer: "Node | None" = None
    users: list["Node"] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Value]
    attrs: dict[str, Any]
    outputs: list[Value]
    origin: str = ""  # where it came from: user source line, or "rule <name>" for rewritten nodes

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} outputs")
        return self.outputs[0]


class Graph:
    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.param_values: dict[str, Value] = {}
        self._names: set[str] = set()
        self._counter = itertools.count()
        # where large parameters built from pieces are written (ir/spill.py; None: kept in memory), and the
        # ones written there: file path -> the memory-mapped array
        self.spill_dir: Path | None = None
        self.spilled: dict[str, np.ndarray] = {}

    # -- naming -------------------------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        hint = "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "v"
        name = hint
        while name in self._names:
            name = f"{hint}_{next(self._counter)}"
        self._names.add(name)
        return name

    # -- construction -------------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        value = Value(self.fresh_name(name), type, "input")
        self.inputs.append(value)
        return value

    def add_param(self, name: str, array: np.ndarray) -> Value:
        # (np.ascontiguousarray makes a 0-d array 1-d; a 0-d parameter stays 0-d)
        array = array if isinstance(array, np.memmap) else np.require(array, requirements="C")
        value = Value(self.fresh_name(name), TensorType(tuple(array.shape), dtype_of_array(array)), "param")
        self.params[value.name] = array
        self.param_values[value.name] = value
        return value

    def add_flat_param(self, name: str, parts: Sequence[np.ndarray], dtype: Any) -> Value:
        """A 1-D parameter, the concatenation of `parts` flattened: streamed to a memory-mapped file in
        `spill_dir` when it is large (never a second in-memory copy of the parts), else concatenated."""
        count = sum(int(np.size(p)) for p in parts)
        if self.spill_dir is None or count * np.dtype(dtype).itemsize < SPILL_BYTES:
            return self.add_param(name, np.concatenate([np.asarray(p, dtype).reshape(-1) for p in parts]))
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"{len(self.spilled):04d}.npy"
        array = stream_npy(path, parts, dtype, count)
        self.spilled[str(array.filename)] = array
        return self.add_param(name, array)

    def add_node(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any] | None = None,
                 origin: str = "", name: str | None = None, before: Node | None = None) -> Node:
        from recc.compiler.ir.ops import infer_types  # ops imports graph-free helpers only; late import avoids a cycle

        inputs = list(inputs)
        attrs = dict(attrs or {})
        types = infer_types(op, [v.type for v in inputs], attrs)
        hint = name or op
        outputs = [Value(self.fresh_name(hint if i == 0 else f"{hint}_{i}"), t, "node") for i, t in enumerate(types)]
        node = Node(op, inputs, attrs, outputs, origin)
        for v in outputs:
            v.producer = node
        for v in inputs:
            v.users.append(node)
        if before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(before), node)
        return node

    # -- editing ------------------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Every reader of `old` (nodes and graph outputs) reads `new` instead."""
        self.redirect(old, new, old.users)
        self.replace_output(old, new)

    def redirect(self, old: Value, new: Value, users: Iterable[Node]) -> None:
        """The given readers of `old` read `new` instead; other readers keep reading `old`."""
        if old.type.dtype != new.type.dtype or old.type.rank != new.type.rank:
            raise ValueError(f"replacing {old!r} with {new!r}: types differ")
        for user in {id(u): u for u in users}.values():
            uses = sum(1 for v in user.inputs if v is old)
            user.inputs = [new if v is old else v for v in user.inputs]
            for _ in range(uses):
                old.users.remove(user)
                new.users.append(user)

    def replace_output(self, old: Value, new: Value) -> None:
        if old.type.dtype != new.type.dtype or old.type.rank != new.type.rank:
            raise ValueError(f"replacing {old!r} with {new!r}: types differ")
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_dead(self) -> int:
        """Drop nodes whose outputs reach no graph output, and unused params. Returns nodes removed."""
        live: set[int] = set()
        stack = [v.producer for v in self.outputs if v.producer is not None]
        while stack:
            node = stack.pop()
            if id(node) in live:
                continue
            live.add(id(node))
            stack.extend(v.producer for v in node.inputs if v.producer is not None)
        dead = [n for n in self.nodes if id(n) not in live]
        for node in reversed(dead):
            for v in node.inputs:
                if node in v.users:
                    v.users.remove(node)
        self.nodes = [n for n in self.nodes if id(n) in live]
        for name, value in list(self.param_values.items()):
            if not value.users and value not in self.outputs:
                del self.param_values[name]
                del self.params[name]
        return len(dead)

    def topo_sort(self) -> None:
        """Reorder nodes topologically (stable with respect to the current order)."""
        import networkx as nx

        g = self.to_networkx()
        order = {id(n): i for i, n in enumerate(self.nodes)}
        by_id = {id(n): n for n in self.nodes}
        self.nodes = [by_id[i] for i in nx.lexicographical_topological_sort(g, key=lambda k: order[k])]

    # -- queries ------------------------------------------------------------------------------------
    def to_networkx(self) -> Any:
        import networkx as nx

        g = nx.DiGraph()
        for node in self.nodes:
            g.add_node(id(node))
            for v in node.inputs:
                if v.producer is not None:
                    g.add_edge(id(v.producer), id(node))
        return g

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for node in self.nodes:
            hist[node.op] = hist.get(node.op, 0) + 1
        return dict(sorted(hist.items()))

    def param_array(self, value: Value) -> np.ndarray | None:
        return self.params.get(value.name) if value.kind == "param" else None

    def clone(self) -> "Graph":
        """A structural copy sharing the (read-only) parameter arrays."""
        g = Graph(self.name)
        g._names = set(self._names)
        g.spill_dir, g.spilled = self.spill_dir, self.spilled
        mapping: dict[int, Value] = {}
        for v in self.inputs:
            nv = Value(v.name, v.type, "input")
            g.inputs.append(nv)
            mapping[id(v)] = nv
        for name, v in self.param_values.items():
            nv = Value(v.name, v.type, "param")
            g.param_values[name] = nv
            g.params[name] = self.params[name]
            mapping[id(v)] = nv
        for node in self.nodes:
            ins = [mapping[id(v)] for v in node.inputs]
            outs = [Value(v.name, v.type, "node") for v in node.outputs]
            nn = Node(node.op, ins, dict(node.attrs), outs, node.origin)
            for v in outs:
                v.producer = nn
            for v in ins:
                v.users.append(nn)
            for old, new in zip(node.outputs, outs):
                mapping[id(old)] = new
            g.nodes.append(nn)
        g.outputs = [mapping[id(v)] for v in self.outputs]
        return g
