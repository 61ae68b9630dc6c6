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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recc.compiler.interpreter import KERNELS
from recc.compiler.ir import Graph, Node, Value
from recc.compiler.pass_manager import PassContext, PassStats
from recc.compiler.rewrite import is_zero

BODY_OPS = ("add", "sub", "mul", "div", "neg", "sigmoid", "tanh", "slice", "reciprocal", "exp")
RULES = {"gru": "gru-sequence", "augru": "augru-sequence"}


@dataclass(frozen=True)
class TimeView:
    """value == base[:, t, offset:offset + width] (base [B, L, F]; or [B, L] with offset 0, width 1)."""

    base: Value
    t: int
    offset: int
    width: int


def time_view(value: Value) -> TimeView | None:
    """Peel reshapes and slices off `value` back to a [B, L, ...] tensor sliced at one time step."""
    v, t, offset = value, None, 0
    width = value.type.shape[-1] if value.type.rank == 2 else None
    if value.type.rank != 2 or not isinstance(width, int):
        return None
    while v.producer is not None and v.producer.op in ("reshape", "slice"):
        node, src = v.producer, v.producer.inputs[0]
        if node.op == "slice":
            axis, rank = node.attrs["axis"] % src.type.rank, src.type.rank
            end = node.attrs["end"] if node.attrs["end"] is not None else src.type.shape[axis]
            if node.attrs.get("step", 1) != 1 or not isinstance(end, int):
                return None
            if rank == 3 and axis == 1 and t is None and end - node.attrs["start"] == 1:
                t = node.attrs["start"]
            elif axis == rank - 1:
                offset += node.attrs["start"]
            else:
                return None
        else:
            s, d = src.type.shape, v.type.shape
            drops_time = len(s) == 3 and s[1] == 1 and d == (s[0], s[2])
            adds_feature = len(s) == 2 and d == (s[0], s[1], 1)
            if not (drops_time or adds_feature):
                break
            if adds_feature and t is None:
                return None
        v = src
    if t is None:
        return None
    if v.type.rank == 2:  # scores [B, L], viewed through [B, L, 1]
        return TimeView(v, t, 0, 1) if offset == 0 and width == 1 else None
    return TimeView(v, t, offset, width) if v.type.rank == 3 else None


@dataclass
class Cell:
    hidden: Node  # dense(h, W_hh, b_hh)
    h_in: Value
    h_out: Value
    t: int
    x_base: Value | None  # [B, L, 3H] projections of all steps, or
    projection: tuple[Value, Value, Value | None] | None  # (inputs [B, L, I], W_ih, b_ih) projected per step
    scores: Value | None  # [B, L] or [B, L, 1]
    body: list[Node] = field(default_factory=list)
    kind: str = "gru"

    def signature(self) -> tuple[Any, ...]:
        proj = tuple(id(v) for v in self.projection if v is not None) if self.projection else ()
        return (self.kind, id(self.hidden.inputs[1]), tuple(id(v) for v in self.hidden.inputs[2:]),
                id(self.x_base) if self.x_base is not None else None, proj,
                id(self.scores) if self.scores is not None else None)


def _scalar(graph: Graph, value: Value) -> bool:
    array = graph.param_array(value)
    return array is not None and array.size == 1


class _Leaves:
    """Classifies a body input as a leaf the step may read; records what it found."""

    def __init__(self, graph: Graph, h: Value, hidden: int) -> None:
        self.graph, self.h, self.hidden = graph, h, hidden
        self.views: dict[int, TimeView] = {}
        self.projections: dict[int, tuple[TimeView, Node, int, int]] = {}  # source, dense, offset, width
        self.t: int | None = None
        self.problem: str | None = None

    def accept(self, value: Value) -> bool:
        if value is self.h or _scalar(self.graph, value):
            return True
        if id(value) in self.views or id(value) in self.projections:
            return True
        view = time_view(value)
        if view is not None and self._same_step(view.t):
            self.views[id(value)] = view
            return True
        node, offset = value.producer, 0
        if node is not None and node.op == "slice" and node.attrs["axis"] % 2 == 1 and node.attrs.get("step", 1) == 1:
            node, offset = node.inputs[0].producer, node.attrs["start"]
        if node is not None and node.op == "dense" and node.attrs.get("activation", "none") == "none" \
                and node.output.type.shape[-1] == 3 * self.hidden and node.output.type.rank == 2 \
                and self.graph.param_array(node.inputs[1]) is not None:
            source = time_view(node.inputs[0])
            if source is not None and source.offset == 0 and source.width == source.base.type.shape[2] \
                    and self._same_step(source.t):
                self.projections[id(value)] = (source, node, offset, value.type.shape[-1])
                return True
        return False

    def _same_step(self, t: int) -> bool:
        if self.t is None:
            self.t = t
        return self.t == t


def _body(graph: Graph, hidden: Node, leaves: _Leaves) -> list[Node]:
    """The elementwise closure of the hidden product over the leaves, in graph order."""
    inside: set[int] = {id(hidden.output)}
    members: list[Node] = []
    frontier = [hidden.output]
    while frontier:
        value = frontier.pop()
        for user in value.users:
            if user.op not in BODY_OPS or any(id(o) in inside for o in user.outputs):
                continue
            if all(id(v) in inside or leaves.accept(v) for v in user.inputs):
                inside.add(id(user.output))
                members.append(user)
                frontier.append(user.output)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    return sorted(members, key=lambda n: order[id(n)])


def _reference(kind: str, h: np.ndarray, x: np.ndarray, g: np.ndarray, score: np.ndarray | None) -> np.ndarray:
    H = h.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))
    r, z = sig(x[:, :H] + g[:, :H]), sig(x[:, H:2 * H] + g[:, H:2 * H])
    n = np.tanh(x[:, 2 * H:] + r * g[:, 2 * H:])
    return h + z * score * (n - h) if kind == "augru" else n + z * (h - n)


def _semantics(graph: Graph, cell_nodes: list[Node], hidden: Node, h_out: Value, leaves: _Leaves,
               x_leaf: dict[int, tuple[int, int]], score_leaf: int | None) -> str | None:
    """Evaluate the body on random leaves (float64); return the update it computes, or None."""
    rng = np.random.default_rng(0)
    H = leaves.hidden
    B = 3
    for kind in (("augru",) if score_leaf is not None else ("gru",)):
        ok = True
        for _ in range(2):
            h = rng.uniform(-1, 1, (B, H))
            x = rng.uniform(-2, 2, (B, 3 * H))
            g = rng.uniform(-2, 2, (B, 3 * H))
            s = rng.uniform(0, 1, (B, 1))
            env: dict[int, np.ndarray] = {id(leaves.h): h, id(hidden.output): g}
            for key, (off, width) in x_leaf.items():
                env[key] = x[:, off:off + width]
            if score_leaf is not None:
                env[score_leaf] = s
            for node in cell_nodes:
                args = []
                for v in node.inputs:
                    if id(v) not in env:
                        env[id(v)] = np.asarray(graph.param_array(v), np.float64).reshape(-1)[:1]
                    args.append(env[id(v)])
                env[id(node.output)] = np.asarray(KERNELS[node.op](args, node.attrs), np.float64)
            got = env[id(h_out)]
            want = _reference(kind, h, x, g, s)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-9):
                ok = False
                break
        if ok:
            return kind
    return None


def match_cell(graph: Graph, hidden: Node) -> Cell | str | None:
    """A GRU/AUGRU cell around the hidden product `hidden`, a reason it is not one, or None (not a
    candidate: not a dense of a [3H, H] parameter on a [B, H] state)."""
    if hidden.op != "dense" or len(hidden.inputs) < 2:
        return None
    h, w = hidden.inputs[0], hidden.inputs[1]
    if graph.param_array(w) is None or h.type.rank != 2 or w.type.shape[0] != 3 * w.type.shape[1]:
        return None
    H = w.type.shape[1]
    if hidden.attrs.get("activation", "none") != "none":
        return "hidden product has an activation"
    if hidden.output in graph.outputs:
        return "hidden product is a graph output"
    leaves = _Leaves(graph, h, H)
    body = _body(graph, hidden, leaves)
    body_ids = {id(n) for n in body} | {id(hidden)}
    live_out = [n.output for n in [hidden, *body]
                if n.output in graph.outputs or any(id(u) not in body_ids for u in n.output.users)]
    if len(live_out) != 1 or live_out[0].type.shape != h.type.shape:
        return f"step body has {len(live_out)} values used outside it (a cell has exactly its new state)"
    h_out = live_out[0]
    if leaves.t is None:
        return "step reads no time step of an input sequence"
    x_leaf: dict[int, tuple[int, int]] = {}
    score_leaf, x_bases, scores, projections = None, set(), None, set()
    used = {id(v) for n in body for v in n.inputs}
    for key, view in leaves.views.items():
        if key not in used:
            continue
        if view.base.type.rank == 2 or view.base.type.shape[2] == 1:
            if score_leaf is not None:
                return "step reads two per-step scores"
            score_leaf, scores = key, view.base
        elif view.base.type.shape[2] == 3 * H:
            x_leaf[key] = (view.offset, view.width)
            x_bases.add(id(view.base))
            x_base = view.base
        else:
            return f"step reads a [B, L, {view.base.type.shape[2]}] input that is not the 3H={3 * H} gate projections"
    projection = None
    for key, (source, node, offset, width) in leaves.projections.items():
        if key in used:
            x_leaf[key] = (offset, width)
            projections.add((id(source.base), id(node.inputs[1]), id(node.inputs[2]) if len(node.inputs) == 3 else None))
            projection = (source.base, node.inputs[1], node.inputs[2] if len(node.inputs) == 3 else None)
    if len(x_bases) + len(projections) != 1:
        return "gate inputs do not come from one projected sequence"
    kind = _semantics(graph, body, hidden, h_out, leaves, x_leaf, score_leaf)
    if kind is None:
        return "step computes neither a GRU nor an AUGRU update"
    return Cell(hidden, h, h_out, leaves.t, x_base if x_bases else None, projection, scores, body, kind)


def _chains(graph: Graph, cells: list[Cell], stats: PassStats) -> list[list[Cell]]:
    by_state = {id(c.h_in): c for c in cells}
    chains = []
    for start in cells:
        if not is_zero(graph, start.h_in):
            continue
        chain, rule = [start], RULES[start.kind]
        while id(chain[-1].h_out) in by_state:
            nxt = by_state[id(chain[-1].h_out)]
            if nxt.signature() != start.signature() or nxt.t != chain[-1].t + 1:
                break
            chain.append(nxt)
        length = (start.x_base if start.x_base is not None else start.projection[0]).type.shape[1]
        if start.t != 0 or len(chain) != length:
            stats.rejected(rule, f"cells cover steps {start.t}..{chain[-1].t} of {length}")
            continue
        chains.append(chain)
    produced = {id(c.h_out) for c in cells}  # a cell whose state no other cell produces starts a chain
    for cell in cells:
        if id(cell.h_in) not in produced and not is_zero(graph, cell.h_in):
            stats.rejected(RULES[cell.kind], "initial state is not zero")
    return chains


def _fuse(graph: Graph, chain: list[Cell]) -> None:
    first = chain[0]
    origin = f"rule {RULES[first.kind]}" + (f" <- {first.hidden.origin}" if first.hidden.origin else "")
    w_hh = first.hidden.inputs[1]
    H = w_hh.type.shape[1]
    b_hh = first.hidden.inputs[2] if len(first.hidden.inputs) == 3 else \
        graph.add_param(f"{w_hh.name}__zero_bias", np.zeros(3 * H, np.float32))
    if first.x_base is not None:
        x = first.x_base
    else:
        source, w_ih, b_ih = first.projection
        x = graph.add_node("dense", [source, w_ih] + ([b_ih] if b_ih is not None else []),
                           {"activation": "none"}, origin=origin, name="projections").output
    inputs = [x, w_hh, b_hh]
    if first.kind == "augru":
        scores = first.scores
        if scores.type.rank == 3:
            scores = graph.add_node("reshape", [scores], {"shape": scores.type.shape[:2]}, origin=origin).output
        inputs.insert(1, scores)
    states = graph.add_node(first.kind, inputs, {}, origin=origin, name=first.kind).output
    inside = {id(n) for c in chain for n in (c.hidden, *c.body)}
    B = states.type.shape[0]
    for cell in chain:
        outside = [u for u in cell.h_out.users if id(u) not in inside]
        if not outside and cell.h_out not in graph.outputs:
            continue
        step = graph.add_node("slice", [states], {"axis": 1, "start": cell.t, "end": cell.t + 1, "step": 1},
                              origin=origin).output
        flat = None
        for user in outside:
            if user.op == "reshape" and user.output.type.shape == step.type.shape:
                graph.replace_all_uses(user.output, step)
                continue
            if flat is None:
                flat = graph.add_node("reshape", [step], {"shape": (B, H)}, origin=origin).output
            user.inputs = [flat if v is cell.h_out else v for v in user.inputs]
            cell.h_out.users.remove(user)
            flat.users.append(user)
        if cell.h_out in graph.outputs:
            if flat is None:
                flat = graph.add_node("reshape", [step], {"shape": (B, H)}, origin=origin).output
            graph.outputs = [flat if v is cell.h_out else v for v in graph.outputs]


class FuseRecurrent:
    name = "fuse-recurrent"
    summary = "fold a GRU / AUGRU unrolled over time steps into one gru / augru op (semantic cell match)"

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        cells = []
        for node in list(graph.nodes):
            found = match_cell(graph, node)
            if isinstance(found, Cell):
                cells.append(found)
            elif isinstance(found, str):
                stats.rejected("cell", found)
        chains = _chains(graph, cells, stats)
        for chain in chains:
            _fuse(graph, chain)
            stats.rewrote(RULES[chain[0].kind])
        if chains:
            graph.topo_sort()
            graph.remove_dead()
        return stats
