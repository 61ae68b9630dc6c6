"""The ONNX `Loop` that torch.onnx.export writes for nn.EmbeddingBag -> IR `embedding_bag`.

ONNX has no pooled lookup, so both exporters write one loop iteration per bag:
- legacy (TorchScript):  Loop(B) { s, e = A[i], A[1:][i];  reduce(Gather(table, ids[s:e]) [* w[s:e]], 0) }
  with scan output [B, D];
- dynamo:  rows = Gather(table, ids) [* w] outside; Loop { s, e = Slice(A, i), Slice(A, i + 1);
  If(s == e, zeros, reduce(rows[s:e], 0)) ; SequenceInsert }, then ConcatFromSequence.
In both, A = Concat(offsets, [len(ids)]), and offsets = Range(0, B*L, L) when torch flattened a 2-D [B, L]
ids tensor (fixed-size bags; we restore the [B, L] layout), else the model's own offsets input.
ReduceMean anywhere in the body means mode=mean. A loop body that is not this raises, naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import onnx
from onnx import helper

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, Lazy, OnnxNode, is_static
from recc.frontends.onnx.shapes import reshape

PASS_THROUGH = ("Unsqueeze", "Squeeze", "Reshape", "Cast", "CastLike", "Identity")


@dataclass(frozen=True)
class BagBody:
    """What a recognised loop body computes per bag i: reduce(rows[A[i]:A[i+1]])."""

    offsets_name: str  # A (outer): offsets followed by len(ids)
    rows_name: str  # outer tensor sliced per bag: ids (legacy) or gathered rows (dynamo)
    table_name: str | None  # legacy: the table gathered inside the body
    weights_name: str | None  # legacy: per-sample weights sliced inside the body
    mode: str


def _body_nodes(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Producer of every name in a loop body, If branches included."""
    out: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.output:
            out[name] = node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out.update(_body_nodes(attr.g))
    return out


def _through(nodes: dict[str, onnx.NodeProto], name: str) -> tuple[str, onnx.NodeProto | None]:
    node = nodes.get(name)
    while node is not None and node.op_type in PASS_THROUGH:
        name = node.input[0]
        node = nodes.get(name)
    return name, node


def _offsets_source(nodes: dict[str, onnx.NodeProto], start: str) -> str:
    """The outer array A that a bag's start A[i] is read from (Gather(A, i) or Slice(A, i, i + 1))."""
    _, node = _through(nodes, start)
    if node is None or node.op_type not in ("Gather", "Slice") or node.input[0] in nodes:
        raise ConversionError("the loop's bag start is not read from an offsets array")
    return node.input[0]


def _recognise(body: onnx.GraphProto) -> BagBody:
    nodes = _body_nodes(body)
    reduces = [n for n in nodes.values() if n.op_type in ("ReduceSum", "ReduceMean")]
    if not reduces:
        raise ConversionError("the loop body has no ReduceSum/ReduceMean: not an EmbeddingBag loop")
    found: set[tuple[Any, ...]] = set()
    for reduce in reduces:
        weights = None
        name, node = _through(nodes, reduce.input[0])
        if node is not None and node.op_type == "Mul":
            (name, node), (w_name, w_node) = _through(nodes, node.input[0]), _through(nodes, node.input[1])
            if node is None or node.op_type != "Gather":
                (name, node), (w_name, w_node) = (w_name, w_node), (name, node)
            if w_node is None or w_node.op_type != "Slice":
                raise ConversionError("the loop body multiplies the rows by something other than a slice")
            weights = w_node.input[0]
        table = None
        if node is not None and node.op_type == "Gather" and node.input[0] not in nodes:
            table = node.input[0]
            name, node = _through(nodes, node.input[1])
        if node is None or node.op_type != "Slice" or node.input[0] in nodes:
            raise ConversionError("the loop body does not reduce a slice of an outer tensor")
        found.add((_offsets_source(nodes, node.input[1]), node.input[0], table, weights))
    if len(found) != 1:
        raise ConversionError("the loop body reduces different slices")
    mode = "mean" if any(r.op_type == "ReduceMean" for r in reduces) else "sum"
    return BagBody(*next(iter(found)), mode=mode)


def _rows_source(ctx: Ctx, rows: Value) -> tuple[Value, Value, Value | None]:
    """dynamo's rows = embedding(table, ids) [* weights[:, None]] -> (table, ids, weights or None)."""
    node = rows.producer
    weights = None
    if node is not None and node.op == "mul":
        lookup, other = node.inputs
        if lookup.producer is None or lookup.producer.op != "embedding":
            lookup, other = other, lookup
        weights = None if _is_ones(ctx, other) else _unsqueezed(other)
        node = lookup.producer
    if node is None or node.op != "embedding":
        raise ConversionError("the loop pools rows that are not a table lookup")
    table, ids = node.inputs
    return table, ids, weights


def _is_ones(ctx: Ctx, v: Value) -> bool:
    while v.producer is not None and v.producer.op in ("reshape", "expand"):
        v = v.producer.inputs[0]
    array = ctx.graph.param_array(v)
    return array is not None and bool((array == 1).all())


def _unsqueezed(v: Value) -> Value:
    """w from reshape(w, [n, 1])."""
    if v.producer is not None and v.producer.op == "reshape" and v.producer.inputs[0].type.rank == 1:
        return v.producer.inputs[0]
    raise ConversionError("per-sample weights are not a 1-D tensor")


def _loop(ctx: Ctx, node: OnnxNode) -> Any:
    try:
        bag = _recognise(node.attr("body"))
        pooled = _emit_bag(ctx, bag)
    except ConversionError as e:
        raise ConversionError(f"only the Loop that torch.onnx.export writes for nn.EmbeddingBag is supported; "
                              f"this body is not one ({e})") from e
    body = node.attr("body")
    producers = {name: n for n in body.node for name in n.output}
    outputs: list[Any] = []
    for body_output in list(body.output)[1:]:  # body outputs after the condition <-> the loop's outputs
        producer = producers.get(body_output.name)
        if producer is not None and producer.op_type == "SequenceInsert":  # dynamo: a sequence of [1, D] rows
            outputs.append(Lazy("a sequence of pooled bags", pooled))
        elif producer is not None and producer.op_type in ("ReduceSum", "ReduceMean"):  # legacy: scan output
            outputs.append(pooled)
        else:
            outputs.append(Lazy("a loop counter"))
    return outputs


def _emit_bag(ctx: Ctx, bag: BagBody) -> Value:
    rows = ctx.as_value(ctx.get(bag.rows_name), name=bag.rows_name)
    if bag.table_name is not None:
        table = ctx.as_value(ctx.get(bag.table_name), name=bag.table_name)
        ids = rows
        weights = ctx.as_value(ctx.get(bag.weights_name)) if bag.weights_name else None
    else:
        table, ids, weights = _rows_source(ctx, rows)
    offsets = _offsets(ctx, ctx.get(bag.offsets_name))
    if offsets is None:  # fixed-size bags: restore [B, L]
        ids2d = _two_d(ids)
        inputs = [table, ids2d] + ([reshape(ctx, weights, list(ids2d.type.shape))] if weights is not None else [])
        return ctx.emit("embedding_bag", inputs, mode=bag.mode, layout="fixed", has_weights=weights is not None)
    inputs = [table, ids, offsets] + ([weights] if weights is not None else [])
    return ctx.emit("embedding_bag", inputs, mode=bag.mode, layout="offsets", include_last_offset=False,
                    has_weights=weights is not None)


def _offsets(ctx: Ctx, a: Any) -> Value | None:
    """A = Concat(offsets, [len(ids)]) -> the offsets Value, or None for Range(0, B*L, L) (fixed bags)."""
    if not isinstance(a, Lazy) or a.what != "a concatenation" or len(a.data) != 2:
        raise ConversionError("the bag offsets are not Concat(offsets, [len(ids)])")
    first = a.data[0]
    if isinstance(first, Lazy) and first.what.startswith("a Range") and first.data[0] == 0:
        return None
    if isinstance(first, Value) and first.type.rank == 1:
        return first
    if is_static(first):
        return ctx.as_value(first, "int64", "offsets")
    raise ConversionError("the bag offsets are neither an arange nor a tensor")


def _two_d(ids: Value) -> Value:
    node = ids.producer
    if node is not None and node.op == "reshape" and node.inputs[0].type.rank == 2:
        return node.inputs[0]
    raise ConversionError("fixed-size bags over ids that are not a flattened [B, L] tensor")


def _concat_from_sequence(ctx: Ctx, node: OnnxNode) -> Value:
    seq = ctx.input(node, 0)
    if not isinstance(seq, Lazy) or seq.what != "a sequence of pooled bags" or int(node.attr("axis")) != 0:
        raise ConversionError("only the ConcatFromSequence over an EmbeddingBag loop is supported")
    return seq.data


def _sequence_empty(ctx: Ctx, node: OnnxNode) -> Lazy:
    return Lazy("an empty sequence")


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Loop": _loop, "ConcatFromSequence": _concat_from_sequence, "SequenceEmpty": _sequence_empty,
}

__all__ = ["CONVERTERS", "helper"]
