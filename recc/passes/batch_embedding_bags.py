"""embedding_bag(t_1, ids_1), ..., embedding_bag(t_T, ids_T)
       -> slice_t(batched_embedding_bag(flat(t_1, ..., t_T), ids))

Also, first, the spellings of a lookup that are bags in disguise:
    sum|mean(embedding(t, ids [B, L]), axis=1)  -> embedding_bag(t, ids, mode=sum|mean)
    embedding(t, ids [B])                       -> embedding_bag(t, reshape(ids, [B, 1]))  (one-hot)

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

from typing import Any

import numpy as np

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.pass_manager import PassContext, PassStats

RULE_BAG = "embedding-reduce-to-bag"
RULE_ONE_HOT = "one-hot-embedding-to-bag"
RULE_BATCH = "batch-lookups"


def _canonicalize_lookups(graph: Graph, stats: PassStats) -> None:
    for node in list(graph.nodes):
        if node.op in ("sum", "mean") and node.inputs[0].producer is not None:
            lookup = node.inputs[0].producer
            if (lookup.op == "embedding" and lookup.inputs[1].type.rank == 2 and list(node.attrs["axes"]) in ([1], [-2])
                    and not node.attrs.get("keepdims") and lookup.output.users == [node]
                    and lookup.output not in graph.outputs):
                bag = graph.add_node("embedding_bag", lookup.inputs,
                                     {"layout": "fixed", "mode": node.op, "has_weights": False},
                                     origin=f"rule {RULE_BAG}", name=node.output.name)
                graph.replace_all_uses(node.output, bag.output)
                stats.rewrote(RULE_BAG)
        elif node.op == "embedding" and node.inputs[1].type.rank == 1:
            table, ids = node.inputs
            bag_ids = graph.add_node("reshape", [ids], {"shape": (ids.type.shape[0], 1)}, origin=f"rule {RULE_ONE_HOT}")
            bag = graph.add_node("embedding_bag", [table, bag_ids.output],
                                 {"layout": "fixed", "mode": "sum", "has_weights": False},
                                 origin=f"rule {RULE_ONE_HOT}", name=node.output.name)
            graph.replace_all_uses(node.output, bag.output)
            stats.rewrote(RULE_ONE_HOT)
    graph.remove_dead()
    graph.topo_sort()


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
    node = value.producer
    if node is not None and node.op == "reshape" and node.inputs[0].producer is not None:
        inner = node.inputs[0].producer
        source = inner.inputs[0] if inner.op == "slice" else None
        if (source is not None and source.type.rank == 3 and inner.attrs["axis"] == 1
                and inner.attrs.get("step", 1) == 1 and isinstance(source.type.shape[2], int)):
            return source, inner.attrs["start"] * source.type.shape[2]
    if (node is not None and node.op == "slice" and node.inputs[0].type.rank == 2 and node.attrs["axis"] == 1
            and node.attrs.get("step", 1) == 1):
        return node.inputs[0], node.attrs["start"]
    return value, 0


def _ids_operand(graph: Graph, lookups: list[Node], origin: str) -> tuple[Value, list[int]]:
    """One [B, C] int64 ids tensor for all lookups and each lookup's first column in it. Lookups whose ids
    are views of one input tensor read that tensor in place; distinct sources are concatenated."""
    bases: list[Value] = []
    first_col: dict[int, int] = {}
    cols = []
    for node in lookups:
        base, col = _flat_columns(node.inputs[1])
        if id(base) not in first_col:
            first_col[id(base)] = sum(_width(b) for b in bases)
            bases.append(base)
        cols.append(first_col[id(base)] + col)
    flat = [b if b.type.rank == 2 else
            graph.add_node("reshape", [b], {"shape": (b.type.shape[0], _width(b))}, origin=origin).output
            for b in bases]
    ids = flat[0] if len(flat) == 1 else graph.add_node("concat", flat, {"axis": 1}, origin=origin).output
    return ids, cols


def _width(base: Value) -> int:
    shape = base.type.shape
    return shape[1] if base.type.rank == 2 else shape[1] * shape[2]


def _batch(graph: Graph, lookups: list[Node]) -> None:
    origin = f"rule {RULE_BATCH}"
    first = lookups[0].attrs
    has_weights = bool(first.get("has_weights"))
    if has_weights:  # weights must line up with ids column for column: lay both out per lookup
        ids = graph.add_node("concat", [n.inputs[1] for n in lookups], {"axis": 1}, origin=origin).output
        weights = graph.add_node("concat", [n.inputs[2] for n in lookups], {"axis": 1}, origin=origin).output
        cols = list(np.cumsum([0] + [n.inputs[1].type.shape[1] for n in lookups[:-1]]).tolist())
    else:
        ids, cols = _ids_operand(graph, lookups, origin)
    tables = [graph.param_array(n.inputs[0]) for n in lookups]
    flat = graph.add_param("batched_tables", np.concatenate([np.asarray(t, np.float32).reshape(-1) for t in tables]))
    attrs: dict[str, Any] = {
        "table_rows": tuple(int(t.shape[0]) for t in tables), "table_dims": tuple(int(t.shape[1]) for t in tables),
        "bag_sizes": tuple(int(n.inputs[1].type.shape[1]) for n in lookups), "id_cols": tuple(int(c) for c in cols),
        "mode": first["mode"], "has_weights": has_weights, "table_names": tuple(n.inputs[0].name for n in lookups)}
    batched = graph.add_node("batched_embedding_bag", [flat, ids] + ([weights] if has_weights else []), attrs,
                             origin=origin, name="batched_embedding_bag").output
    column = 0
    for node, dim in zip(lookups, attrs["table_dims"]):
        part = graph.add_node("slice", [batched], {"axis": 1, "start": column, "end": column + dim, "step": 1},
                              origin=origin, name=node.output.name)
        graph.replace_all_uses(node.output, part.output)
        column += dim


class BatchEmbeddingBags:
    name = "batch-embedding-bags"
    summary = "turn all fixed-size embedding bags into one table-batched lookup over a flat table buffer"

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        _canonicalize_lookups(graph, stats)
        candidates = []
        for node in graph.nodes:
            if node.op == "embedding_bag":
                reason = _why_not(graph, node)
                if reason is None:
                    candidates.append(node)
                else:
                    stats.rejected(RULE_BATCH, reason)
        reached = _lookups_reached(graph, candidates)
        groups: dict[tuple[str, bool], list[Node]] = {}
        for node in candidates:
            if reached[id(node)]:
                stats.rejected(RULE_BATCH, "ids depend on another lookup's result")
                continue
            groups.setdefault((node.attrs["mode"], bool(node.attrs.get("has_weights"))), []).append(node)
        for (mode, has_weights), lookups in groups.items():
            if len(lookups) == 1:
                stats.rejected(RULE_BATCH, f"the only lookup with mode={mode}, has_weights={has_weights}")
                continue
            _batch(graph, lookups)
            stats.rewrote(RULE_BATCH)
        graph.remove_dead()
        graph.topo_sort()
        return stats
