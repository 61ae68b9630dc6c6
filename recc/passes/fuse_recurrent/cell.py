"""Finding one cell: the body of a GRU/AUGRU step around its hidden product, and what it computes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recc.compiler.ir import Graph, Node, Value, constant_scalar
from recc.compiler.rewrite import Reject
from recc.passes.fuse_recurrent.semantics import cell_update
from recc.passes.fuse_recurrent.views import TimeView, time_view

BODY_OPS = ("add", "sub", "mul", "div", "neg", "sigmoid", "tanh", "slice", "reciprocal", "exp")


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


class _Leaves:
    """Classifies a body input as a leaf the step may read; records what it found."""

    def __init__(self, graph: Graph, h: Value, hidden: int) -> None:
        self.graph, self.h, self.hidden = graph, h, hidden
        self.views: dict[int, TimeView] = {}
        self.projections: dict[int, tuple[TimeView, Node, int, int]] = {}  # source, dense, offset, width
        self.t: int | None = None
        self.problem: str | None = None

    def accept(self, value: Value) -> bool:
        if value is self.h or constant_scalar(self.graph, value) is not None:
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


def match_cell(graph: Graph, hidden: Node) -> Cell | Reject | None:
    """A GRU/AUGRU cell around the hidden product `hidden`, a reason it is not one, or None (not a
    candidate: not a dense of a [3H, H] parameter on a [B, H] state)."""
    if hidden.op != "dense" or len(hidden.inputs) < 2:
        return None
    h, w = hidden.inputs[0], hidden.inputs[1]
    if graph.param_array(w) is None or h.type.rank != 2 or w.type.shape[0] != 3 * w.type.shape[1]:
        return None
    H = w.type.shape[1]
    if hidden.attrs.get("activation", "none") != "none":
        return Reject("hidden product has an activation")
    if hidden.output in graph.outputs:
        return Reject("hidden product is a graph output")
    leaves = _Leaves(graph, h, H)
    body = _body(graph, hidden, leaves)
    body_ids = {id(n) for n in body} | {id(hidden)}
    live_out = [n.output for n in [hidden, *body]
                if n.output in graph.outputs or any(id(u) not in body_ids for u in n.output.users)]
    if len(live_out) != 1 or live_out[0].type.shape != h.type.shape:
        return Reject(f"step body has {len(live_out)} values used outside it (a cell has exactly its new state)")
    h_out = live_out[0]
    if leaves.t is None:
        return Reject("step reads no time step of an input sequence")
    x_leaf: dict[int, tuple[int, int]] = {}
    score_leaf, x_bases, scores, projections = None, set(), None, set()
    used = {id(v) for n in body for v in n.inputs}
    for key, view in leaves.views.items():
        if key not in used:
            continue
        if view.base.type.rank == 2 or view.base.type.shape[2] == 1:
            if score_leaf is not None:
                return Reject("step reads two per-step scores")
            score_leaf, scores = key, view.base
        elif view.base.type.shape[2] == 3 * H:
            x_leaf[key] = (view.offset, view.width)
            x_bases.add(id(view.base))
            x_base = view.base
        else:
            return Reject(f"step reads a [B, L, {view.base.type.shape[2]}] input that is not the 3H={3 * H} gate projections")
    projection = None
    for key, (source, node, offset, width) in leaves.projections.items():
        if key in used:
            x_leaf[key] = (offset, width)
            projections.add((id(source.base), id(node.inputs[1]), id(node.inputs[2]) if len(node.inputs) == 3 else None))
            projection = (source.base, node.inputs[1], node.inputs[2] if len(node.inputs) == 3 else None)
    if len(x_bases) + len(projections) != 1:
        return Reject("gate inputs do not come from one projected sequence")
    kind = cell_update(graph, body, hidden, h_out, x_leaf, score_leaf)
    if kind is None:
        return Reject("step computes neither a GRU nor an AUGRU update")
    return Cell(hidden, h, h_out, leaves.t, x_base if x_bases else None, projection, scores, body, kind)


