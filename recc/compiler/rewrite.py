"""The one shape of a pass: rules that match, check (declining with a reason) and rewrite through a builder.

A `Rule` looks at one root node: its `match` returns None when the root is not the pattern at all, a
`Reject` with a reason when it is the pattern but a legality check fails (a near miss: counted in the pass
report), or a `Match`. Its `rewrite` builds the replacement of the root's value through a `Builder`; the
pass, not the rule, splices it in, records provenance and cleans up. `RewritePass` runs rules to a fixpoint.

A `GroupPass` is for rewrites that replace a set of nodes at once (all embedding lookups, the cells of a
recurrence): it finds candidates (each one, or a Reject), forms groups from them (each one, or a Reject),
and rewrites each group through a Builder. Either way, every decline is reported with its reason.

The smallest complete example is recc/passes/fuse_dense_activation.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.pass_manager import PassContext, PassStats


@dataclass(frozen=True)
class Reject:
    """A rule looked at a node (or a group) and declined; `reason` is counted in the pass report."""

    reason: str


@dataclass
class Match:
    """What a rule found; `nodes` are the ones it replaces (the root last), `data` anything else."""

    nodes: list[Node]
    data: dict[str, Any] = field(default_factory=dict)


class Builder:
    """Adds the nodes and parameters of one rewrite; every node it adds records which rule made it."""

    def __init__(self, graph: Graph, rule: str, root: Node | None = None) -> None:
        self.graph = graph
        self.origin = f"rule {rule}" + (f" <- {root.origin}" if root is not None and root.origin else "")

    def op(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any] | None = None,
           name: str | None = None) -> Value:
        return self.graph.add_node(op, inputs, attrs, origin=self.origin, name=name).output

    def param(self, hint: str, array: np.ndarray) -> Value:
        return self.graph.add_param(hint, array)

    def reshape(self, x: Value, shape: tuple[Any, ...], name: str | None = None) -> Value:
        return self.op("reshape", [x], {"shape": tuple(shape)}, name=name)

    def slice(self, x: Value, axis: int, start: int, end: int, name: str | None = None) -> Value:
        return self.op("slice", [x], {"axis": axis, "start": start, "end": end, "step": 1}, name=name)

    def concat(self, values: Sequence[Value], axis: int, name: str | None = None) -> Value:
        return values[0] if len(values) == 1 else self.op("concat", values, {"axis": axis}, name=name)

    def replace(self, old: Value, new: Value, users: Iterable[Node] | None = None) -> None:
        """Readers of `old` read `new`: all of them (and graph outputs), or only `users`."""
        if users is None:
            self.graph.replace_all_uses(old, new)
        else:
            self.graph.redirect(old, new, users)


@dataclass(frozen=True)
class Rule:
    name: str
    root_op: str | tuple[str, ...]
    match: Callable[[Graph, Node], Match | Reject | None]
    rewrite: Callable[[Builder, Node, Match], Value]

    def applies_to(self, node: Node) -> bool:
        return node.op == self.root_op if isinstance(self.root_op, str) else node.op in self.root_op


class RewritePass:
    """A pass made of rules: visit nodes in order; the first rule that matches a node rewrites it.

    Repeats until no rule fires (a fixpoint), so chains (a rewrite enabling another) are handled and a
    second run of the pass changes nothing. Rejections are reported for the final graph.
    """

    name = "rewrite"
    summary = ""
    rules: Sequence[Rule] = ()
    max_iterations = 50

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        for _ in range(self.max_iterations):
            if not self._sweep(graph, stats):
                if stats.rewrites:  # earlier sweeps may have declined nodes a later rewrite then handled
                    stats.rejects = {}
                    self._count_rejects(graph, stats)
                return stats
        raise RuntimeError(f"pass {self.name} did not reach a fixpoint in {self.max_iterations} sweeps")

    def _sweep(self, graph: Graph, stats: PassStats) -> bool:
        changed = False
        seen_rejects: set[tuple[int, str]] = set()
        for node in list(graph.nodes):
            if node not in graph.nodes:  # removed by an earlier rewrite in this sweep
                continue
            for rule in self.rules:
                if not rule.applies_to(node):
                    continue
                found = rule.match(graph, node)
                if isinstance(found, Reject) and (id(node), rule.name) not in seen_rejects:
                    seen_rejects.add((id(node), rule.name))
                    stats.rejected(rule.name, found.reason)
                if isinstance(found, Match):
                    self._apply(graph, node, rule, found)
                    stats.rewrote(rule.name)
                    changed = True
                    break
        return changed

    def _count_rejects(self, graph: Graph, stats: PassStats) -> None:
        for node in graph.nodes:
            for rule in self.rules:
                if rule.applies_to(node):
                    found = rule.match(graph, node)
                    if isinstance(found, Reject):
                        stats.rejected(rule.name, found.reason)

    @staticmethod
    def _apply(graph: Graph, root: Node, rule: Rule, match: Match) -> None:
        new_value = rule.rewrite(Builder(graph, rule.name, root), root, match)
        # The builder appends new nodes at the end; topo_sort moves them before their users.
        graph.replace_all_uses(root.output, new_value)
        graph.remove_dead()
        graph.topo_sort()


Candidate = TypeVar("Candidate")
Group = TypeVar("Group")


class GroupPass(Generic[Candidate, Group]):
    """A pass that rewrites sets of nodes at once. Subclasses give three steps:

    `candidates(graph)`: (rule, a candidate or a Reject) for every node the pass looks at;
    `groups(graph, candidates)`: (rule, a group of candidates or a Reject), all formed before any rewrite;
    `rewrite(builder, group)`: build the group's replacement and redirect its readers through the builder.
    """

    name = "group"
    summary = ""

    def candidates(self, graph: Graph) -> Iterable[tuple[str, Candidate | Reject]]:
        raise NotImplementedError

    def groups(self, graph: Graph, candidates: list[Candidate]) -> Iterable[tuple[str, Group | Reject]]:
        raise NotImplementedError

    def rewrite(self, builder: Builder, group: Group) -> None:
        raise NotImplementedError

    def root(self, group: Group) -> Node | None:
        """The node whose origin the rewritten nodes inherit (None: the rule name alone)."""
        return None

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        found: list[Candidate] = []
        for rule, candidate in self.candidates(graph):
            if isinstance(candidate, Reject):
                stats.rejected(rule, candidate.reason)
            else:
                found.append(candidate)
        for rule, group in list(self.groups(graph, found)):
            if isinstance(group, Reject):
                stats.rejected(rule, group.reason)
                continue
            self.rewrite(Builder(graph, rule, self.root(group)), group)
            stats.rewrote(rule)
        if stats.rewrites:
            graph.remove_dead()
            graph.topo_sort()
        return stats
