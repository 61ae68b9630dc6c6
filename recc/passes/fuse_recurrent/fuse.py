"""From cells to sequences: chain the cells state to state, and replace each full chain by one op."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from recc.compiler.ir import Graph, Value, is_zero
from recc.compiler.rewrite import Builder, Reject
from recc.passes.fuse_recurrent.cell import Cell

RULES = {"gru": "gru-sequence", "augru": "augru-sequence"}


def chains(graph: Graph, cells: list[Cell]) -> Iterator[tuple[str, list[Cell] | Reject]]:
    """Every chain of cells from a zero state over all steps 0..L-1 of one sequence, or why a chain is not."""
    by_state = {id(c.h_in): c for c in cells}
    for start in cells:
        if not is_zero(graph, start.h_in):
            continue
        chain = [start]
        while id(chain[-1].h_out) in by_state:
            nxt = by_state[id(chain[-1].h_out)]
            if nxt.signature() != start.signature() or nxt.t != chain[-1].t + 1:
                break
            chain.append(nxt)
        length = (start.x_base if start.x_base is not None else start.projection[0]).type.shape[1]
        if start.t != 0 or len(chain) != length:
            yield RULES[start.kind], Reject(f"cells cover steps {start.t}..{chain[-1].t} of {length}")
        else:
            yield RULES[start.kind], chain
    produced = {id(c.h_out) for c in cells}  # a cell whose state no other cell produces starts a chain
    for cell in cells:
        if id(cell.h_in) not in produced and not is_zero(graph, cell.h_in):
            yield RULES[cell.kind], Reject("initial state is not zero")


def _sequence(b: Builder, first: Cell) -> Value:
    """The fused op over the whole sequence: every step's state, [B, L, H]."""
    w_hh = first.hidden.inputs[1]
    H = w_hh.type.shape[1]
    b_hh = first.hidden.inputs[2] if len(first.hidden.inputs) == 3 else \
        b.param(f"{w_hh.name}__zero_bias", np.zeros(3 * H, np.float32))
    if first.x_base is not None:
        x = first.x_base
    else:
        source, w_ih, b_ih = first.projection
        x = b.op("dense", [source, w_ih] + ([b_ih] if b_ih is not None else []), {"activation": "none"},
                 name="projections")
    inputs = [x, w_hh, b_hh]
    if first.kind == "augru":
        scores = first.scores
        if scores.type.rank == 3:
            scores = b.reshape(scores, scores.type.shape[:2])
        inputs.insert(1, scores)
    return b.op(first.kind, inputs, {}, name=first.kind)


def fuse(b: Builder, chain: list[Cell]) -> None:
    """Replace the chain's cells: readers outside the chain read their step's slice of the fused op."""
    states = _sequence(b, chain[0])
    inside = {id(n) for c in chain for n in (c.hidden, *c.body)}
    B, H = states.type.shape[0], states.type.shape[2]
    for cell in chain:
        outside = [u for u in cell.h_out.users if id(u) not in inside]
        if not outside and cell.h_out not in b.graph.outputs:
            continue
        step = b.slice(states, 1, cell.t, cell.t + 1)
        flat = None
        for user in outside:
            if user.op == "reshape" and user.output.type.shape == step.type.shape:
                b.replace(user.output, step)
                continue
            if flat is None:
                flat = b.reshape(step, (B, H))
            b.replace(cell.h_out, flat, users=[user])
        if cell.h_out in b.graph.outputs:
            if flat is None:
                flat = b.reshape(step, (B, H))
            b.graph.replace_output(cell.h_out, flat)
