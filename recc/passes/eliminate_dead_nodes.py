"""Remove nodes whose results reach no graph output, and parameters nothing uses.

Why: frontends leave behind values torch computed for training (embedding_bag's offset2bag, ...) and
rewrites orphan the nodes they replaced; dead nodes would otherwise be compiled and run.
Always legal: IR ops have no side effects.
"""

from __future__ import annotations

from recc.compiler.ir import Graph
from recc.compiler.pass_manager import PassContext, PassStats


class EliminateDeadNodes:
    name = "eliminate-dead-nodes"
    summary = "drop nodes and parameters that no output depends on"

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        params_before = len(graph.params)
        removed = graph.remove_dead()
        if removed:
            stats.rewrote("dead-node", removed)
        if len(graph.params) < params_before:
            stats.rewrote("dead-param", params_before - len(graph.params))
        return stats
