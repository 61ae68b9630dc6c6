"""Two attention patterns, each to one op:

sum(softmax(score(concat(k, q, k - q, k * q)) [+ bias]) * k, over positions)
    -> target_attention(k, q, [bias], W_1', b_1, ..., W_L, b_L)                       (rule target-attention)
matmul(softmax(matmul(q, k^T) * scale [+ bias]), v)  (the scale may also be a division, or applied to q)
    -> attention(q, k, v, [bias], scale)                                    (rule scaled-dot-product-attention)

with q = expand(q[:, None]) over the S positions of the keys k [B, S, D], and score = an MLP of dense
layers ending in one output (DIN's local activation unit).

Why: as written, the unit materializes the [B, S, 4D] concat (and q broadcast S times, k - q, k * q),
runs layer 1 on 4D inputs per position, and then the masked softmax and the weighted sum as separate
passes over [B, S] and [B, S, D]. Layer 1 is linear, so W [k, q, k-q, k*q] = (W_k + W_d) k +
(W_q - W_d) q + W_kq (k*q): the q part is computed once per sample instead of once per position, and
layer 1 reads 2D inputs per position instead of 4D (DIN: half of layer 1's FLOPs). The fused op's kernel
keeps each sample's hidden activations in scratch and never writes the [B, S, 4D] unit input.
For scaled-dot-product attention (torch's F.scaled_dot_product_attention arrives spelled out), the fused
kernel computes each query row's scores, softmax and weighted sum in registers and scratch: the [.., Lq, Lk]
score and probability tensors are never written. Legal when k^T is a transpose of the last two axes,
the scale is a scalar constant, the softmax runs over the keys, and no intermediate has another user.

Target attention is legal when: the concat is exactly [k, q, k - q, k * q] along the feature axis with q a broadcast of one
vector per sample, the MLP layers are dense with parameter weights, the hidden activations carry no
parameters, the last layer has one output and no activation, the softmax runs over the positions, the
weighted sum multiplies by the same k, and no intermediate has another user.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recc.compiler.ir import Graph, Node, Value, constant_scalar, producer_op, single_user
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")


def _other(node: Node, value: Value) -> Value:
    return node.inputs[1] if node.inputs[0] is value else node.inputs[0]


def _weights_and_scores(graph: Graph, root: Node) -> tuple[Value, Node, Value | None, Node] | Reject | None:
    """(keys, softmax node, score bias or None, last dense) under sum(mul(reshape(softmax), keys))."""
    if list(root.attrs["axes"]) not in ([1], [-2]) or root.attrs.get("keepdims") or root.inputs[0].type.rank != 3:
        return None
    weighted = producer_op(root.inputs[0], "mul")
    if weighted is None:
        return None
    for spread, keys in ((weighted.inputs[0], weighted.inputs[1]), (weighted.inputs[1], weighted.inputs[0])):
        reshape = producer_op(spread, "reshape")
        softmax = producer_op(reshape.inputs[0], "softmax") if reshape is not None else None
        if softmax is not None and keys.type.rank == 3 and spread.type.shape == keys.type.shape[:2] + (1,):
            break
    else:
        return None
    if softmax.attrs["axis"] % 2 != 1:
        return Reject("softmax is not over the positions")
    scores, bias = softmax.inputs[0], None
    add = producer_op(scores, "add")
    if add is not None and add.inputs[0].type == add.inputs[1].type:
        flat = next((v for v in add.inputs if producer_op(v, "reshape") is not None), None)
        if flat is None:
            return Reject("scores are not a reshaped dense output")
        bias, scores = _other(add, flat), flat
    last = producer_op(producer_op(scores, "reshape").inputs[0], "dense") if producer_op(scores, "reshape") else None
    if last is None:
        return Reject("scores are not a reshaped dense output")
    intermediates = (weighted.output, spread, softmax.output, softmax.inputs[0], scores, last.output)
    if not all(single_user(graph, v) for v in intermediates):
        return Reject("an attention intermediate has another user")
    return keys, softmax, bias, last


def _mlp(graph: Graph, last: Node) -> list[Node] | Reject:
    """The dense layers from the unit input to `last`, first first."""
    layers = [last]
    while (prev := producer_op(layers[-1].inputs[0], "dense")) is not None:
        if not single_user(graph, prev.output):
            return Reject("an attention intermediate has another user")
        layers.append(prev)
    layers.reverse()
    for i, layer in enumerate(layers):
        if len(layer.inputs) != 3 or any(graph.param_array(v) is None for v in layer.inputs[1:]):
            return Reject("a score layer's weight or bias is not a parameter")
        act = layer.attrs.get("activation", "none")
        if act not in ACTIVATIONS or (i == len(layers) - 1 and act != "none"):
            return Reject(f"score layer activation {act} is not fused")
    if last.output.type.shape[-1] != 1:
        return Reject("the last score layer has more than one output")
    return layers


def _unit_query(graph: Graph, unit: Value, keys: Value) -> Value | Reject:
    """q [B, D] if `unit` = concat(keys, q, keys - q, keys * q) with q broadcast over positions."""
    concat = producer_op(unit, "concat")
    if concat is None or concat.attrs["axis"] % 3 != 2 or len(concat.inputs) != 4:
        return Reject("attention unit input is not [k, q, k-q, k*q]")
    k, spread, diff, prod = concat.inputs
    expand = producer_op(spread, "expand")
    lifted = producer_op(expand.inputs[0], "reshape") if expand is not None else None
    sub, mul = producer_op(diff, "sub"), producer_op(prod, "mul")
    if (k is not keys or lifted is None or sub is None or mul is None or sub.inputs != [keys, spread]
            or set(map(id, mul.inputs)) != {id(keys), id(spread)} or lifted.inputs[0].type.rank != 2):
        return Reject("attention unit input is not [k, q, k-q, k*q]")
    if not (single_user(graph, unit) and single_user(graph, diff) and single_user(graph, prod)):
        return Reject("an attention intermediate has another user")
    return lifted.inputs[0]


def _match(graph: Graph, root: Node) -> Match | Reject | None:
    found = _weights_and_scores(graph, root)
    if found is None or isinstance(found, Reject):
        return found
    keys, _, bias, last = found
    layers = _mlp(graph, last)
    if isinstance(layers, Reject):
        return layers
    query = _unit_query(graph, layers[0].inputs[0], keys)
    if isinstance(query, Reject):
        return query
    return Match([root], {"keys": keys, "query": query, "bias": bias, "layers": layers})


def _folded_first_layer(weight: np.ndarray) -> np.ndarray:
    """W over [k, q, k-q, k*q] -> W' over [k, q, k*q]."""
    w_k, w_q, w_d, w_kq = np.split(np.asarray(weight, np.float32), 4, axis=1)
    return np.concatenate([w_k + w_d, w_q - w_d, w_kq], axis=1)


def _rewrite(b: Builder, root: Node, match: Match) -> Value:
    data: dict[str, Any] = match.data
    layers: list[Node] = data["layers"]
    inputs = [data["keys"], data["query"]] + ([data["bias"]] if data["bias"] is not None else [])
    first_weight = b.param(f"{layers[0].inputs[1].name}_folded", _folded_first_layer(
        b.graph.param_array(layers[0].inputs[1])))
    for i, layer in enumerate(layers):
        inputs += [first_weight if i == 0 else layer.inputs[1], layer.inputs[2]]
    attrs = {"activations": tuple(layer.attrs.get("activation", "none") for layer in layers[:-1]),
             "has_score_bias": data["bias"] is not None}
    return b.op("target_attention", inputs, attrs, name=root.output.name)


def _scaled(graph: Graph, value: Value) -> tuple[Value, float]:
    """(x, s) with value = x * s for a scalar constant s (mul either side, or div), else (value, 1)."""
    node = value.producer
    if node is not None and node.op in ("mul", "div"):
        for x, c in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            s = constant_scalar(graph, c)
            if s is not None and x.type == value.type and (node.op == "mul" or c is node.inputs[1]):
                return x, (s if node.op == "mul" else 1.0 / s)
    return value, 1.0


def _match_sdpa(graph: Graph, root: Node) -> Match | Reject | None:
    softmax = producer_op(root.inputs[0], "softmax")
    if softmax is None:
        return None
    scores, bias = softmax.inputs[0], None
    rank = scores.type.rank
    if rank < 3 or softmax.attrs["axis"] % rank != rank - 1:
        return Reject("softmax is not over the keys")
    add = producer_op(scores, "add")
    if add is not None:
        scores, bias = (add.inputs[0], add.inputs[1]) if add.inputs[0].type == scores.type else (add.inputs[1], add.inputs[0])
    product, scale = _scaled(graph, scores)
    qk = producer_op(product, "matmul")
    if qk is None:
        return Reject("scores are not a matmul of q and k^T")
    q, q_scale = _scaled(graph, qk.inputs[0])
    transposed = producer_op(qk.inputs[1], "permute")
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    if transposed is None or tuple(transposed.attrs["perm"]) != perm:
        return Reject("k is not transposed over its last two axes")
    k, v = transposed.inputs[0], root.inputs[1]
    if q.type.shape[:-2] != k.type.shape[:-2] or v.type.shape[:-2] != k.type.shape[:-2]:
        return Reject("q, k and v leading dims differ (broadcast attention is not fused)")
    chain = (root.inputs[0], softmax.inputs[0], scores, product, qk.inputs[1]) + ((qk.inputs[0],) if q is not qk.inputs[0] else ())
    if not all(single_user(graph, x) for x in chain):
        return Reject("an attention intermediate has another user")
    return Match([root], {"qkv": [q, k, v], "bias": bias, "scale": scale * q_scale})


def _rewrite_sdpa(b: Builder, root: Node, match: Match) -> Value:
    inputs = match.data["qkv"] + ([match.data["bias"]] if match.data["bias"] is not None else [])
    return b.op("attention", inputs, {"scale": match.data["scale"]}, name=root.output.name)


class FuseAttention(RewritePass):
    name = "fuse-attention"
    summary = "DIN's attention unit, and scaled-dot-product attention, each -> one op"
    rules = (Rule("target-attention", "sum", _match, _rewrite),
             Rule("scaled-dot-product-attention", "matmul", _match_sdpa, _rewrite_sdpa))
