"""embedding_bag(t_1, ids_1), ..., embedding_bag(t_T, ids_T)
       -> slice_t(batched_embedding_bag(flat(t_1, ..., t_T), ids))

(canonicalize-lookups, which runs just before, turns the other spellings of a lookup into embedding_bag.)

Why: a recommendation model does tens of small lookups per query. One op over all of them is one
kernel launch instead of T (at batch 1 the launches cost more than the gathers), one parallel loop over
every (table, bag) pair instead of T small ones that cannot fill the cores, and its output is already the
concatenation that DLRM's interaction and Wide&Deep's deep MLP read (FBGEMM's table-batched embedding
is the reference design). Tables that read the same ids (Wide&Deep's wide and deep parts) share them.

Legal when: the lookups have fixed-size bags (offsets layout: variable bags are not batched yet), the
same pooling mode and the same per_sample_weights-ness (each distinct combination is its own batch), the
tables are parameters used by nothing else (they are copied into the flat buffer; a table shared with
another op would be stored twice), and no lookup's ids depend on another lookup's result (that would
make the batch depend on itself). A group of one lookup is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from recc.compiler.ir import Graph, Node, Value, trace_view
from recc.compiler.rewrite import Builder, GroupPass, Reject

RULE = "batch-lookups"


def _why_not(graph: Graph, node: Node) -> str | None:
    """Why this embedding_bag cannot join a batch (None: it can)."""
    table, ids = node.inputs[0], node.inputs[1]
    if node.attrs["layout"] != "fixed":
        return "offsets layout (variable-size bags) is not batched"
    if graph.param_array(table) is None:
        return "table is not a parameter"
    if table.type.dtype != "float32":
        return f"table is {table.type.dtype}, not float32"
    if len(table.users) != 1 or table in graph.outputs:
        return "table is also read by another op (batching would store it twice)"
    if ids.type.dtype != "int64":
        return f"ids are {ids.type.dtype}, not int64"
    if not all(isinstance(d, int) for d in _flat_columns(ids)[0].type.shape[1:]):
        return "ids have a symbolic bag size"
    return None


def _lookups_reached(graph: Graph, candidates: list[Node]) -> dict[int, set[int]]:
    """For every node, the candidate lookups whose results it (transitively) reads."""
    ids = {id(n) for n in candidates}
    reached: dict[int, set[int]] = {}
    for node in graph.nodes:
        acc: set[int] = set()
        for v in node.inputs:
            if v.producer is not None:
                acc |= reached[id(v.producer)]
                if id(v.producer) in ids:
                    acc.add(id(v.producer))
        reached[id(node)] = acc
    return reached


def _flat_columns(value: Value) -> tuple[Value, int]:
    """(base, first column): `value` [B, L] is columns [first, first + L) of `base` viewed as [B, -1], when
    it is a slice (+ reshape) of a [B, A, L] or [B, C] tensor along axis 1; else (value, 0)."""
    _, views = trace_view(value)
    if len(views) >= 2 and views[0].op == "reshape" and views[1].op == "slice":
        inner, source = views[1], views[1].inputs[0]
        if (source.type.rank == 3 and inner.attrs["axis"] == 1 and inner.attrs.get("step", 1) == 1
                and isinstance(source.type.shape[2], int)):
            return source, inner.attrs["start"] * source.type.shape[2]
    if (views and views[0].op == "slice" and views[0].inputs[0].type.rank == 2 and views[0].attrs["axis"] == 1
            and views[0].attrs.get("step", 1) == 1):
        return views[0].inputs[0], views[0].attrs["start"]
    return value, 0


def _ids_operand(b: Builder, lookups: list[Node]) -> tuple[Value, list[int]]:
    """One [B, C] int64 ids tensor for all lookups and each lookup's first column in it. Lookups whose ids
    are views of one input tensor read that tensor in place; distinct sources are concatenated."""
    bases: list[Value] = []
    first_col: dict[int, int] = {}
    cols = []
    for node in lookups:
        base, col = _flat_columns(node.inputs[1])
        if id(base) not in first_col:
            first_col[id(base)] = sum(_width(v) for v in bases)
            bases.append(base)
        cols.append(first_col[id(base)] + col)
    flat = [v if v.type.rank == 2 else b.reshape(v, (v.type.shape[0], _width(v))) for v in bases]
    return b.concat(flat, axis=1), cols


def _width(base: Value) -> int:
    shape = base.type.shape
    return shape[1] if base.type.rank == 2 else shape[1] * shape[2]


def _batch(b: Builder, lookups: list[Node]) -> None:
    first = lookups[0].attrs
    has_weights = bool(first.get("has_weights"))
    if has_weights:  # weights must line up with ids column for column: lay both out per lookup
        ids = b.op("concat", [n.inputs[1] for n in lookups], {"axis": 1})
        weights = b.op("concat", [n.inputs[2] for n in lookups], {"axis": 1})
        cols = list(np.cumsum([0] + [n.inputs[1].type.shape[1] for n in lookups[:-1]]).tolist())
    else:
        ids, cols = _ids_operand(b, lookups)
    tables = [b.graph.param_array(n.inputs[0]) for n in lookups]
    flat = b.graph.add_flat_param("batched_tables", tables, np.float32)  # large: streamed to a file (ir/spill.py)
    attrs: dict[str, Any] = {
        "table_rows": tuple(int(t.shape[0]) for t in tables), "table_dims": tuple(int(t.shape[1]) for t in tables),
        "bag_sizes": tuple(int(n.inputs[1].type.shape[1]) for n in lookups), "id_cols": tuple(int(c) for c in cols),
        "mode": first["mode"], "has_weights": has_weights, "table_names": tuple(n.inputs[0].name for n in lookups)}
    batched = b.op("batched_embedding_bag", [flat, ids] + ([weights] if has_weights else []), attrs,
                   name="batched_embedding_bag")
    column = 0
    for node, dim in zip(lookups, attrs["table_dims"]):
        b.replace(node.output, b.slice(batched, 1, column, column + dim, name=node.output.name))
        column += dim


class BatchEmbeddingBags(GroupPass[Node, list[Node]]):
    name = "batch-embedding-bags"
    summary = "turn all fixed-size embedding bags into one table-batched lookup over a flat table buffer"

    def candidates(self, graph: Graph) -> Iterator[tuple[str, Node | Reject]]:
        for node in graph.nodes:
            if node.op == "embedding_bag":
                reason = _why_not(graph, node)
                yield RULE, (node if reason is None else Reject(reason))

    def groups(self, graph: Graph, candidates: list[Node]) -> Iterator[tuple[str, list[Node] | Reject]]:
        reached = _lookups_reached(graph, candidates)
        groups: dict[tuple[str, bool], list[Node]] = {}
        for node in candidates:
            if reached[id(node)]:
                yield RULE, Reject("ids depend on another lookup's result")
                continue
            groups.setdefault((node.attrs["mode"], bool(node.attrs.get("has_weights"))), []).append(node)
        for (mode, has_weights), lookups in groups.items():
            if len(lookups) == 1:
                yield RULE, Reject(f"the only lookup with mode={mode}, has_weights={has_weights}")
            else:
                yield RULE, lookups

    def rewrite(self, builder: Builder, group: list[Node]) -> None:
        _batch(builder, group)
