"""The pass API (recc.compiler.rewrite): a rule's near misses are counted with their reasons, rewritten
nodes record their rule, a group pass reports every candidate and group it declines."""

from __future__ import annotations

from collections.abc import Iterator

from recc.compiler.ir import Graph, Node, Value, producer_op, single_user
from recc.compiler.rewrite import Builder, GroupPass, Match, Reject, RewritePass, Rule
from tests.passes.graphs import Small, assert_same_function, run


def _match_double_neg(graph: Graph, node: Node) -> Match | Reject | None:
    inner = producer_op(node.inputs[0], "neg")
    if inner is None:
        return None
    if not single_user(graph, inner.output):
        return Reject("inner neg has another user")
    return Match([inner, node])


class DropDoubleNeg(RewritePass):
    name = "drop-double-neg"
    rules = (Rule("double-neg", "neg", _match_double_neg, lambda b, node, match: match.nodes[0].inputs[0]),)


def test_rewrite_pass_rewrites_and_reports_near_misses_of_the_final_graph() -> None:
    g = Small()
    x = g.input("x", 4)
    once = g.op("neg", x)
    shared = g.op("neg", once)  # neg(neg(x)): rewritten
    kept = g.op("neg", x)
    graph = g.returns(shared, g.op("neg", kept), kept)  # kept has two readers: declined
    before = graph.clone()
    stats = run(graph, DropDoubleNeg())
    assert stats.rewrites == {"double-neg": 1}
    assert stats.rejects == {"double-neg: inner neg has another user": 1}
    assert_same_function(before, graph)


def _rewrite_to_tanh(b: Builder, node: Node, match: Match) -> Value:
    return b.op("tanh", node.inputs, name=node.output.name)


def test_builder_stamps_the_rule_and_the_root_origin() -> None:
    g = Small()
    x = g.input("x", 4)
    node = g.graph.add_node("sigmoid", [x], origin="model.py:7")
    graph = g.returns(node.output)
    always = RewritePass()
    always.rules = (Rule("sigmoid-to-tanh", "sigmoid", lambda graph, n: Match([n]), _rewrite_to_tanh),)
    assert run(graph, always).rewrites == {"sigmoid-to-tanh": 1}
    assert graph.nodes[0].op == "tanh" and graph.nodes[0].origin == "rule sigmoid-to-tanh <- model.py:7"


class ConcatRelus(GroupPass[Node, list[Node]]):
    """relu(x_1), ..., relu(x_n) of [B, 4] inputs -> slices of relu(concat(x_1, ..., x_n)); for the test."""

    name = "concat-relus"

    def candidates(self, graph: Graph) -> Iterator[tuple[str, Node | Reject]]:
        for node in graph.nodes:
            if node.op == "relu":
                yield "relus", node if node.inputs[0].type.shape[1] == 4 else Reject("not 4 wide")

    def groups(self, graph: Graph, candidates: list[Node]) -> Iterator[tuple[str, list[Node] | Reject]]:
        yield "relus", candidates if len(candidates) > 1 else Reject("fewer than two relus")

    def rewrite(self, builder: Builder, group: list[Node]) -> None:
        joined = builder.op("relu", [builder.concat([n.inputs[0] for n in group], axis=1)])
        for i, node in enumerate(group):
            builder.replace(node.output, builder.slice(joined, 1, 4 * i, 4 * i + 4))


def test_group_pass_rewrites_groups_and_reports_declined_candidates_and_groups() -> None:
    g = Small()
    a, b, c = g.input("a", 4), g.input("b", 4), g.input("c", 3)
    graph = g.returns(g.op("relu", a), g.op("relu", b), g.op("relu", c))
    before = graph.clone()
    stats = run(graph, ConcatRelus())
    assert stats.rewrites == {"relus": 1} and stats.rejects == {"relus: not 4 wide": 1}
    assert graph.op_histogram() == {"concat": 1, "relu": 2, "slice": 2}
    assert all(n.origin == "rule relus" for n in graph.nodes if n.op in ("concat", "slice"))
    assert_same_function(before, graph)
    single = Small()
    lone = single.returns(single.op("relu", single.input("a", 4)))
    assert run(lone, ConcatRelus()).rejects == {"relus: fewer than two relus": 1}
