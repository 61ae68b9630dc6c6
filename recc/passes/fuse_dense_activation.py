"""act(dense(x, w, b)) -> dense(x, w, b, activation=act)

Why: the activation then runs in the dense kernel's epilogue on the register tile, instead of as a
separate kernel that re-reads and re-writes the whole [M, N] output (one memory round trip and one
kernel dispatch saved per layer; at batch 1 dispatch dominates).
Legal when the dense has no activation yet and its output has no other user (else the pre-activation
value is still needed), and the activation is one the dense kernel's epilogue implements.

The smallest complete rule: a pattern (None: not this pattern), checks that decline with a reason, and a
rewrite through the builder. Copy it to write a new fusion.
"""

from __future__ import annotations

from recc.compiler.ir import Graph, Node, Value, producer_op, single_user
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule

FUSABLE = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu", "leaky_relu": "leaky_relu",
           "gelu": "gelu"}


def _match(graph: Graph, act: Node) -> Match | Reject | None:
    dense = producer_op(act.inputs[0], "dense")
    if dense is None:
        return None
    if dense.attrs.get("activation", "none") != "none":
        return Reject("dense already has an activation")
    if not single_user(graph, dense.output):
        return Reject("dense output has another user")
    name = FUSABLE[act.op]
    if act.op == "gelu" and act.attrs.get("approximate", "none") == "tanh":
        name = "gelu_tanh"
    return Match([dense, act], {"activation": name})


def _rewrite(b: Builder, act: Node, match: Match) -> Value:
    dense = match.nodes[0]
    attrs = dict(dense.attrs, activation=match.data["activation"])
    if act.op == "leaky_relu":
        attrs["alpha"] = act.attrs.get("alpha", 0.01)
    return b.op("dense", dense.inputs, attrs, name=dense.output.name)


class FuseDenseActivation(RewritePass):
    name = "fuse-dense-activation"
    summary = "fold an activation that follows a dense layer into the dense op's epilogue"
    rules = (Rule("activation-into-dense", tuple(FUSABLE), _match, _rewrite),)
