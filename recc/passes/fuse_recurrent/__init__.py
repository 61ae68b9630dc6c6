"""A GRU or AUGRU written as a loop of cells over time steps -> one `gru` / `augru` op.

Why: unrolled, a recurrence over L steps is ~10 small ops per step (DIEN: 2 x 40 steps, ~1000 nodes), each
a kernel launch and a round trip of [B, H] through memory. Fused, one kernel keeps the state in registers
and scratch for all steps and reads the hidden weights from cache; the input projections of all steps are
one GEMM before it (if the model projected per step, the pass makes that one GEMM).

Matching is semantic, not syntactic. A cell is found from its hidden product `dense(h, W_hh [3H, H])`:
its body is the elementwise closure of that product over the leaves the step may read (the state h,
time-step views x[:, t] of a [B, L, F] tensor, per-step projections dense(x[:, t], W_ih), scalar
constants), and its result is the one value that leaves the body. The body is then evaluated on random
leaves and compared with PyTorch's GRU update (gates r, z, n) and with DIEN's AUGRU update (z scaled by
the step's score); so `n + z * (h - n)`, `(1 - z) * n + z * h`, one sigmoid over [r, z] or two, split or
chunk, all match, and anything else declines.
Legal when the cells chain state to state from a zero initial state over every step 0..L-1 of one input
tensor, share W_hh and b_hh, and no value inside a cell is used outside it.

The package: views.py (which time step a value reads), cell.py (one cell: its body and leaves),
semantics.py (which update a body computes), fuse.py (chains of cells -> one op); this module is the pass.
"""

from __future__ import annotations

from collections.abc import Iterator

from recc.compiler.ir import Graph, Node
from recc.compiler.rewrite import Builder, GroupPass, Reject
from recc.passes.fuse_recurrent.cell import Cell, match_cell
from recc.passes.fuse_recurrent.fuse import RULES, chains, fuse
from recc.passes.fuse_recurrent.views import TimeView, time_view


class FuseRecurrent(GroupPass[Cell, list[Cell]]):
    name = "fuse-recurrent"
    summary = "fold a GRU / AUGRU unrolled over time steps into one gru / augru op (semantic cell match)"

    def candidates(self, graph: Graph) -> Iterator[tuple[str, Cell | Reject]]:
        for node in list(graph.nodes):
            found = match_cell(graph, node)
            if found is not None:
                yield "cell", found

    def groups(self, graph: Graph, candidates: list[Cell]) -> Iterator[tuple[str, list[Cell] | Reject]]:
        return chains(graph, candidates)

    def rewrite(self, builder: Builder, group: list[Cell]) -> None:
        fuse(builder, group)

    def root(self, group: list[Cell]) -> Node:
        return group[0].hidden


__all__ = ["RULES", "Cell", "FuseRecurrent", "TimeView", "match_cell", "time_view"]
