"""The many spellings of a dense layer -> one `dense(x, w [N, K], b [N])`:

    matmul(x, permute(w, (1, 0)))      -> dense(x, w)            (t / transpose / permute / .T of a weight)
    matmul(x, w [K, N] constant)       -> dense(x, w.T)          (x @ W, mm, addmm with W stored [K, N])
    add(dense(x, w, b), c) | add(c, .) -> dense(x, w, b + c)     (bias on either side, [N] / [1, N] / scalar)
    sub(dense(x, w, b), c)             -> dense(x, w, b - c)
    mul(dense(x, w, b), s) | div(., s) -> dense(x, w * s, b * s) (a scale, scalar or per output; BatchNorm)
    dense(mul(x, s), w, b)             -> dense(x, w * s, b)     (a scale of the input, scalar or per input)

Why: fuse-dense-activation (and the dense kernel with its bias + activation epilogue) then sees one
form, however the model wrote the layer; every add / mul folded away is one kernel and one read and
write of the [M, N] activations saved. Eval-mode BatchNorm after a linear is a sub, a div, a mul and an
add by per-channel constants, so it folds into the weights and bias through the same rules.
Legal when the weight and the folded operands are constants (parameters, or expressions of them that
`constant_value` evaluates), the operand broadcasts along the output's last axis only (else the bias
differs per row, or the add grows the output), the dense output feeds only the folded op, and the
dense has no activation yet (an activation does not commute with a bias or a scale).
Scales are folded exactly as written (w * s in fp32): fp32 rounding differs from the unfolded graph by a
few ulps, never more.
"""

from __future__ import annotations

import numpy as np

from recc.compiler.interpreter import constant_value
from recc.compiler.ir import Graph, Node, Value, producer_op, single_user
from recc.compiler.ir.types import is_float
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule

WEIGHT_MAX_ELEMENTS = 1 << 26  # a constant weight is read (and transposed) at compile time up to this size


def _per_output(array: np.ndarray, n: int, rank: int) -> np.ndarray | None:
    """`array` as an [n] vector along the last axis of a rank-`rank` [..., n] tensor, if broadcasting it
    there leaves every other axis alone ([], [1], [n], [1, n], [1, 1, n], ...); else None."""
    if array.ndim > rank or any(d != 1 for d in array.shape[:-1]) or (array.ndim and array.shape[-1] not in (1, n)):
        return None
    return np.broadcast_to(array.reshape(-1), (n,)) if array.ndim else np.full(n, array, array.dtype)


def _matmul_guard(node: Node) -> Reject | None:
    weight = node.inputs[1]
    if weight.type.rank != 2:
        return Reject("weight has batch dims")
    if not is_float(node.output.type.dtype):
        return Reject("matmul is not floating point")
    return None


def _match_transposed_weight(graph: Graph, node: Node) -> Match | Reject | None:
    permute = producer_op(node.inputs[1], "permute")
    if permute is None or permute.inputs[0].kind != "param":
        return None
    guard = _matmul_guard(node)
    if guard is not None:
        return guard
    if tuple(permute.attrs["perm"]) != (1, 0):
        return Reject("permutation is not a transpose")  # e.g. the identity on a square weight
    return Match([node], {"weight": permute.inputs[0]})


def _match_constant_weight(graph: Graph, node: Node) -> Match | Reject | None:
    guard = _matmul_guard(node)
    if guard is not None:
        return guard
    weight = constant_value(graph, node.inputs[1], WEIGHT_MAX_ELEMENTS)
    if weight is None:
        return Reject("weight is computed from inputs")
    return Match([node], {"weight_t": weight})


def _rewrite_matmul(b: Builder, node: Node, match: Match) -> Value:
    weight = match.data.get("weight")
    if weight is None:
        weight = b.param(f"{node.inputs[1].name}_t", np.ascontiguousarray(match.data["weight_t"].T))
    return b.op("dense", [node.inputs[0], weight], {"activation": "none"}, name=node.output.name)


def _dense_operand(graph: Graph, node: Node) -> tuple[Node, Value] | None:
    """(the dense, the other operand) if one operand of the binary `node` is a dense output."""
    for i in (0, 1):
        dense = producer_op(node.inputs[i], "dense")
        if dense is not None and (i == 0 or node.op in ("add", "mul")):  # sub / div: only dense on the left
            return dense, node.inputs[1 - i]
    return None


def _epilogue_guard(graph: Graph, node: Node, dense: Node, operand: Value) -> np.ndarray | Reject:
    """The operand as a per-output vector, or why it cannot fold into `dense`."""
    if dense.attrs.get("activation", "none") != "none":
        return Reject("dense already has an activation")
    if not single_user(graph, dense.output):
        return Reject("dense output has another user")
    array = constant_value(graph, operand)
    if array is None:
        return Reject(f"{'bias' if node.op in ('add', 'sub') else 'scale'} is not a constant")
    vector = _per_output(array, dense.inputs[1].type.shape[0], dense.output.type.rank)
    if vector is None:
        return Reject(f"{'bias' if node.op in ('add', 'sub') else 'scale'} does not broadcast on the last axis")
    if node.op in ("mul", "div") and dense.inputs[1].kind != "param":
        return Reject("weight is computed from inputs")
    if len(dense.inputs) == 3 and constant_value(graph, dense.inputs[2]) is None:
        return Reject("dense bias is not a constant")
    return vector


def _match_epilogue(graph: Graph, node: Node) -> Match | Reject | None:
    found = _dense_operand(graph, node)
    if found is None:
        return None
    dense, operand = found
    vector = _epilogue_guard(graph, node, dense, operand)
    if isinstance(vector, Reject):
        return vector
    if node.op == "div" and not vector.all():
        return Reject("divisor has a zero")
    return Match([dense, node], {"vector": vector})


def _rebuild_dense(b: Builder, dense: Node, weight: np.ndarray | None, bias: np.ndarray | None, name: str) -> Value:
    x, w = dense.inputs[0], dense.inputs[1]
    dtype = w.type.dtype
    w_value = w if weight is None else b.param(f"{w.name}_scaled", weight.astype(dtype))
    inputs = [x, w_value]
    if bias is not None:
        inputs.append(b.param(f"{name}_bias", np.ascontiguousarray(bias, dtype=dtype)))
    elif len(dense.inputs) == 3:
        inputs.append(dense.inputs[2])
    return b.op("dense", inputs, dict(dense.attrs), name=name)


def _old_bias(graph: Graph, dense: Node) -> np.ndarray:
    n = dense.inputs[1].type.shape[0]
    if len(dense.inputs) < 3:
        return np.zeros(n, np.dtype(dense.output.type.dtype))
    return np.asarray(constant_value(graph, dense.inputs[2]))


def _rewrite_bias(b: Builder, node: Node, match: Match) -> Value:
    dense, vector = match.nodes[0], match.data["vector"]
    bias = _old_bias(b.graph, dense) + (vector if node.op == "add" else -vector)
    return _rebuild_dense(b, dense, None, bias, node.output.name)


def _rewrite_scale(b: Builder, node: Node, match: Match) -> Value:
    dense, vector = match.nodes[0], match.data["vector"]
    scale = vector if node.op == "mul" else (1 / vector).astype(vector.dtype)
    weight = np.asarray(constant_value(b.graph, dense.inputs[1], WEIGHT_MAX_ELEMENTS))
    bias = _old_bias(b.graph, dense) * scale if len(dense.inputs) == 3 else None
    return _rebuild_dense(b, dense, weight * scale[:, None], bias, node.output.name)


def _match_input_scale(graph: Graph, dense: Node) -> Match | Reject | None:
    scaled = producer_op(dense.inputs[0], ("mul", "div"))
    if scaled is None:
        return None
    if dense.inputs[1].kind != "param":
        return Reject("weight is computed from inputs")
    k = dense.inputs[1].type.shape[1]
    for i in ((0, 1) if scaled.op == "mul" else (1,)):
        array = constant_value(graph, scaled.inputs[i])
        if array is None:
            continue
        vector = _per_output(array, k, scaled.output.type.rank)
        if vector is None or scaled.output.type.shape != scaled.inputs[1 - i].type.shape:
            return Reject("input scale does not broadcast on the last axis")
        if not single_user(graph, scaled.output):
            return Reject("scaled input has another user")
        if scaled.op == "div" and not vector.all():
            return Reject("divisor has a zero")
        return Match([scaled, dense], {"x": scaled.inputs[1 - i], "vector": vector})
    return None


def _rewrite_input_scale(b: Builder, dense: Node, match: Match) -> Value:
    vector = match.data["vector"]
    scale = vector if match.nodes[0].op == "mul" else (1 / vector).astype(vector.dtype)
    weight = np.asarray(constant_value(b.graph, dense.inputs[1], WEIGHT_MAX_ELEMENTS))
    w_value = b.param(f"{dense.inputs[1].name}_scaled", (weight * scale[None, :]).astype(weight.dtype))
    return b.op("dense", [match.data["x"], w_value] + dense.inputs[2:], dict(dense.attrs), name=dense.output.name)


class CanonicalizeDense(RewritePass):
    name = "canonicalize-dense"
    summary = "turn matmul + bias / scale / BatchNorm spellings of a dense layer into one dense op"
    rules = (Rule("matmul-transposed-weight", "matmul", _match_transposed_weight, _rewrite_matmul),
             Rule("matmul-constant-weight", "matmul", _match_constant_weight, _rewrite_matmul),
             Rule("bias-into-dense", ("add", "sub"), _match_epilogue, _rewrite_bias),
             Rule("scale-into-dense", ("mul", "div"), _match_epilogue, _rewrite_scale),
             Rule("input-scale-into-dense", "dense", _match_input_scale, _rewrite_input_scale))
