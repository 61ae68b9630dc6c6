"""The spellings of a lookup that are bags in disguise -> embedding_bag:

    sum|mean(embedding(t, ids [B, L]), axis=1)  -> embedding_bag(t, ids, mode=sum|mean)   (embedding-reduce-to-bag)
    embedding(t, ids [B])                       -> embedding_bag(t, reshape(ids, [B, 1])) (one-hot-embedding-to-bag)

Why: batch-embedding-bags (which runs right after) batches embedding_bag ops only; a model that pools
by hand, or looks up one id per sample, then joins the one table-batched lookup like the others.
Legal when the reduction is over the bag axis (1) without keepdims and the lookup's rows are read by
nothing else (else the [B, L, D] rows are still needed). A one-id lookup is a bag of one: always legal.
"""

from __future__ import annotations

from recc.compiler.ir import Graph, Node, Value, producer_op, single_user
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule


def _match_reduce(graph: Graph, node: Node) -> Match | Reject | None:
    lookup = producer_op(node.inputs[0], "embedding")
    if lookup is None:
        return None
    if lookup.inputs[1].type.rank != 2:
        return Reject("ids are not [B, L] bags")
    if list(node.attrs["axes"]) not in ([1], [-2]):
        return Reject("reduces over an axis other than the bag axis")
    if node.attrs.get("keepdims"):
        return Reject("keeps the reduced axis")
    if not single_user(graph, lookup.output):
        return Reject("the looked-up rows have another user")
    return Match([lookup, node])


def _rewrite_reduce(b: Builder, node: Node, match: Match) -> Value:
    lookup = match.nodes[0]
    return b.op("embedding_bag", lookup.inputs, {"layout": "fixed", "mode": node.op, "has_weights": False},
                name=node.output.name)


def _match_one_hot(graph: Graph, node: Node) -> Match | None:
    return Match([node]) if node.inputs[1].type.rank == 1 else None


def _rewrite_one_hot(b: Builder, node: Node, match: Match) -> Value:
    table, ids = node.inputs
    bag_ids = b.reshape(ids, (ids.type.shape[0], 1))
    return b.op("embedding_bag", [table, bag_ids], {"layout": "fixed", "mode": "sum", "has_weights": False},
                name=node.output.name)


class CanonicalizeLookups(RewritePass):
    name = "canonicalize-lookups"
    summary = "turn an embedding pooled by hand, or one id per sample, into an embedding_bag"
    rules = (Rule("embedding-reduce-to-bag", ("sum", "mean"), _match_reduce, _rewrite_reduce),
             Rule("one-hot-embedding-to-bag", "embedding", _match_one_hot, _rewrite_one_hot))
