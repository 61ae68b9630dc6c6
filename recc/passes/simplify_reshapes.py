"""reshape(reshape(x, s1), s2) -> reshape(x, s2);  reshape(x, shape(x)) -> x
permute(permute(x, p), q) -> permute(x, p o q);  permute(x, identity) -> x

Why: frontends spell stack/select/squeeze as reshapes, and chains of them are copies or VM calls
that compute nothing; ONNX exports wrap batch-first layers in transposes that cancel out. Always legal: a reshape only reinterprets a contiguous tensor.
"""

from __future__ import annotations

from recc.compiler.ir import Graph, Node, Value, producer_op
from recc.compiler.rewrite import Builder, Match, RewritePass, Rule


def _match_chain(graph: Graph, node: Node) -> Match | None:
    inner = producer_op(node.inputs[0], "reshape")
    return Match([inner, node]) if inner is not None else None


def _rewrite_chain(b: Builder, node: Node, match: Match) -> Value:
    source = match.nodes[0].inputs[0]
    if source.type.shape == node.output.type.shape:
        return source
    return b.op("reshape", [source], {"shape": node.output.type.shape}, name=node.output.name)


def _match_identity(graph: Graph, node: Node) -> Match | None:
    if node.inputs[0].type.shape == node.output.type.shape and node.output not in graph.outputs:
        return Match([node])
    return None


def _match_permutes(graph: Graph, node: Node) -> Match | None:
    inner = producer_op(node.inputs[0], "permute")
    return Match([inner, node]) if inner is not None else None


def _rewrite_permutes(b: Builder, node: Node, match: Match) -> Value:
    inner = match.nodes[0]
    perm = tuple(inner.attrs["perm"][i] for i in node.attrs["perm"])
    source = inner.inputs[0]
    if perm == tuple(range(len(perm))):
        return source
    return b.op("permute", [source], {"perm": perm}, name=node.output.name)


def _match_identity_permute(graph: Graph, node: Node) -> Match | None:
    if tuple(node.attrs["perm"]) == tuple(range(node.output.type.rank)) and node.output not in graph.outputs:
        return Match([node])
    return None


class SimplifyReshapes(RewritePass):
    name = "simplify-reshapes"
    summary = "merge chains of reshapes (and of permutes) and drop those that change nothing"
    rules = (Rule("reshape-of-reshape", "reshape", _match_chain, _rewrite_chain),
             Rule("identity-reshape", "reshape", _match_identity, lambda b, n, m: n.inputs[0]),
             Rule("permute-of-permute", "permute", _match_permutes, _rewrite_permutes),
             Rule("identity-permute", "permute", _match_identity_permute, lambda b, n, m: n.inputs[0]))
