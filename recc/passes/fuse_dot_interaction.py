"""concat(x, take(reshape(matmul(Z, permute(Z, [0, 2, 1])), [B, n*n]), tril_index))   with
Z = concat(x[:, None], f_1[:, None], ..., f_T[:, None])
    -> dot_interaction(x, concat(f_1, ..., f_T))

Why: DLRM's interaction as written builds Z (a copy), its transpose (a copy), the full n x n product
(half of it thrown away, plus the diagonal), and gathers the triangle (another pass over memory). The
fused op reads each feature vector once and computes only the n(n-1)/2 dot products it keeps, writing
them straight after x: the top MLP's input. After batch-embedding-bags, the features are adjacent slices
of the batched lookup's output, so `concat(f_1, ..., f_T)` simplifies to that output itself.
Legal when the gathered indices are exactly the strict lower triangle in row-major order
(torch.tril_indices(n, n, -1), DLRM's default), Z's first vector is the x that the result is
concatenated with, and none of the intermediates (Z, the product, the triangle) is used elsewhere.
"""

from __future__ import annotations

import numpy as np

from recc.compiler.ir import Graph, Node, Value, producer_op, single_user
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule


def _vector_source(piece: Value) -> Value | None:
    """The [B, D] vector a [B, 1, D] piece of Z was made from (through a reshape), else None."""
    node = producer_op(piece, "reshape")
    if node is not None and node.inputs[0].type.rank == 2:
        return node.inputs[0]
    return None


def _interaction_chain(graph: Graph, tri: Value) -> tuple[Node, Node, Node, Node, Node] | Reject | None:
    """(take, reshape, matmul, permute, concat Z) under the triangle, or None / why not."""
    take = producer_op(tri, "take")
    flat = producer_op(take.inputs[0], "reshape") if take is not None else None
    product = producer_op(flat.inputs[0], "matmul") if flat is not None else None
    if product is None:
        return None
    z, transposed = product.inputs
    permute = producer_op(transposed, "permute")
    concat = producer_op(z, "concat")
    if permute is None or concat is None or permute.inputs[0] is not z or tuple(permute.attrs["perm"]) != (0, 2, 1):
        return Reject("the product is not Z times its transpose")
    if z.type.rank != 3 or concat.attrs["axis"] % 3 != 1:
        return Reject("Z is not a concat of [B, 1, D] vectors")
    if not (single_user(graph, tri) and single_user(graph, take.inputs[0]) and single_user(graph, flat.inputs[0])
            and len(z.users) == 2 and z not in graph.outputs and single_user(graph, transposed)):
        return Reject("an interaction intermediate has another user")
    return take, flat, product, permute, concat


def _match(graph: Graph, root: Node) -> Match | Reject | None:
    if len(root.inputs) != 2 or root.attrs["axis"] % 2 != 1 or root.inputs[0].type.rank != 2:
        return None
    x, tri = root.inputs
    chain = _interaction_chain(graph, tri)
    if chain is None or isinstance(chain, Reject):
        return chain
    take, _, _, _, concat = chain
    n = concat.output.type.shape[1]
    index = graph.param_array(take.inputs[1])
    li, lj = np.tril_indices(n, -1)
    if index is None or take.attrs["axis"] % 2 != 1 or not np.array_equal(np.asarray(index).reshape(-1), li * n + lj):
        return Reject("gathered indices are not the strict lower triangle in row-major order")
    sources = [_vector_source(p) for p in concat.inputs]
    if sources[0] is not x:
        return Reject("Z's first vector is not the x the result is concatenated with")
    if any(s is None for s in sources) or any(p.type.shape[1] != 1 for p in concat.inputs):
        return Reject("a feature of Z is not a reshaped [B, D] vector")
    return Match([concat, *chain[:4], root], {"features": sources[1:]})


def _rewrite(b: Builder, root: Node, match: Match) -> Value:
    features: list[Value] = match.data["features"]
    stacked = features[0] if len(features) == 1 else b.op("concat", features, {"axis": 1})
    return b.op("dot_interaction", [root.inputs[0], stacked], name=root.output.name)


class FuseDotInteraction(RewritePass):
    name = "fuse-dot-interaction"
    summary = "DLRM's Z Z^T lower-triangle interaction (+ concat with x) -> one dot_interaction op"
    rules = (Rule("dot-interaction", "concat", _match, _rewrite),)
