"""A grammar of small recommendation models, for the compiler fuzzer (tests/fuzz/test_model_fuzz.py).

A model is a spec: a JSON-able dict, so a shrunk failing case can be kept as a file in
tests/fuzz/regressions/. `build(spec)` makes the nn.Module, `make_inputs(spec, batch, seed)` its inputs.

    model       := lookups (1-4), a dense input (none, or width 1-16) through a bottom MLP (0-2 layers)
                   -> interaction -> view -> top MLP (0-3 layers, residual adds) -> heads (1-3 outputs)
    lookup      := a table (8-2000 rows, dim 1-64) read in one spelling (LOOKUPS): pooled (EmbeddingBag
                   sum/mean/max on [B, L] ids, or on flat ids with arange offsets, or with per-sample
                   weights; nn.Embedding / F.embedding / w[ids] / index_select, then sum or mean over the
                   bag) or unpooled (nn.Embedding [B, L, D] flattened; one id per row)
    linear      := nn.Linear | F.linear | x @ w.T + b | addmm | matmul + b | x @ w_kn + b | no bias
    activation  := relu | sigmoid | tanh | leaky_relu | gelu | gelu_tanh | silu | none
    interaction := cat | dot-tril (bmm of the stacked features, strict lower triangle by li/lj indexing,
                   as DLRM) | dot-triu (upper triangle of the flattened bmm, index_select) | dot-full
    view        := none | slice | unflatten + transpose + flatten | view + sum

Ids: each lookup reads an ids input of its own, or (`shared_ids`) all lookups read slices of one stacked
[B, T, L] input, as DLRM does. `w[ids]` lookups on their own input also get negative ids (Python indexing
wraps them). Weights are small (tables uniform +-0.5, Linear ~1/sqrt(fan_in)) so outputs stay of
magnitude ~1-10 and an fp32 tolerance of 1e-4 means something.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

POOLED = ("bag-sum", "bag-mean", "bag-offsets-sum", "bag-offsets-mean", "bag-weighted", "embedding-sum",
          "embedding-mean", "F.embedding-sum", "index-sum", "index-mean", "index_select-sum",
          "index_select-mean")
UNPOOLED = ("embedding-flat", "single-id")
REFUSED = ("bag-max",)  # recc refuses EmbeddingBag(mode="max") at capture (docs/toolchain-notes.md)
LOOKUPS = POOLED + UNPOOLED + REFUSED
LINEARS = ("nn.Linear", "F.linear", "x @ w.T + b", "addmm", "matmul + b", "x @ w_kn + b", "no bias")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh", "silu", "none")
INTERACTIONS = ("cat", "dot-tril", "dot-triu", "dot-full")
VIEWS = ("none", "slice", "transpose", "view-sum")
Spec = dict[str, Any]


# -- the strategy ----------------------------------------------------------------------------------------
def _one(options: Any) -> st.SearchStrategy[Any]:
    """One of `options`, about evenly: st.sampled_from left the last lookup spellings (EmbeddingBag max)
    out of a 136-model run."""
    return st.integers(0, 2**20).map(lambda i: options[i % len(options)])


def _layer(draw: Any, width: int | None = None) -> Spec:
    return {"width": width if width is not None else draw(st.integers(1, 32)),
            "linear": draw(_one(LINEARS)), "act": draw(_one(ACTIVATIONS))}


def _twin(draw: Any, first: Spec) -> Spec:
    """A second lookup of the same table with the same ids, in a spelling that reads those ids alike."""
    spelling = first["spelling"]
    choices = ([spelling] if spelling == "single-id" else ["index-sum", "index-mean"] if spelling.startswith("index-")
               else [s for s in POOLED if not s.startswith("index-")])
    return dict(first, spelling=draw(st.sampled_from(choices)), twin=True)


@st.composite
def specs(draw: Any) -> Spec:
    interaction = draw(_one(INTERACTIONS))
    dot_dim = draw(st.sampled_from([1, 2, 4, 8, 16, 64]))
    shared = draw(st.booleans())
    bag = draw(st.integers(1, 8))
    lookups = []
    for i in range(draw(st.integers(1 if interaction == "cat" else 2, 4))):
        spelling = draw(_one(LOOKUPS))
        dim = dot_dim if interaction != "cat" and (i < 2 or draw(st.booleans())) else draw(st.integers(1, 64))
        if interaction != "cat" and i < 2:
            spelling = draw(_one(POOLED))  # two features of the dot's width at least
        lookup = {"rows": draw(st.sampled_from([8, 50, 333, 2000])), "dim": dim, "spelling": spelling,
                  "bag": bag if shared else draw(st.integers(1, 8)), "twin": False}
        if lookups and not shared and draw(st.integers(0, 3)) == 0:
            lookup = _twin(draw, lookups[-1])
        lookups.append(lookup)
    dense = draw(st.sampled_from([0, 1, 3, 13, 16]))
    bottom = [_layer(draw) for _ in range(draw(st.integers(0, 2)))] if dense else []
    if bottom and interaction != "cat" and draw(st.booleans()):
        bottom[-1]["width"] = dot_dim  # the dense feature joins the dot
    top = []
    for _ in range(draw(st.integers(0, 3))):
        residual = bool(top) and draw(st.booleans())
        top.append(dict(_layer(draw, top[-1]["width"] if residual else None), residual=residual))
    heads = [dict(_layer(draw, draw(st.integers(1, 4))), source=draw(st.sampled_from(["top", "features"])))
             for _ in range(draw(st.integers(1, 3)))]
    return {"seed": draw(st.integers(0, 2**16)), "dense": dense, "bottom": bottom, "lookups": lookups,
            "shared_ids": shared and not any(lk["spelling"] == "single-id" for lk in lookups),
            "interaction": interaction, "dot_dim": dot_dim, "view": draw(_one(VIEWS)),
            "view_at": draw(st.integers(0, 2**16)), "top": top, "heads": heads,
            "leaky_slope": draw(st.sampled_from([0.01, 0.2]))}


def features(spec: Spec) -> set[str]:
    """The grammar's choices a spec uses, for the report's counts per feature."""
    out = {f"lookup:{lk['spelling']}" for lk in spec["lookups"]} | {f"interaction:{spec['interaction']}",
                                                                   f"view:{spec['view']}"}
    layers = spec["bottom"] + spec["top"] + spec["heads"]
    out |= {f"linear:{layer['linear']}" for layer in layers} | {f"act:{layer['act']}" for layer in layers}
    out |= {"shared-ids"} if spec["shared_ids"] else set()
    out |= {"twin-lookup"} if any(lk["twin"] for lk in spec["lookups"]) else set()
    out |= {"dense-input"} if spec["dense"] else {"no-dense-input"}
    out |= {"residual"} if any(layer["residual"] for layer in spec["top"]) else set()
    out |= {f"heads:{len(spec['heads'])}"}
    return out


# -- the module ------------------------------------------------------------------------------------------
class Dense(nn.Module):
    """One linear layer + activation, in the spelling the spec names."""

    def __init__(self, layer: Spec, width_in: int, g: torch.Generator, slope: float) -> None:
        super().__init__()
        self.spelling, self.act, self.slope = layer["linear"], layer["act"], slope
        w = torch.randn(layer["width"], width_in, generator=g) / math.sqrt(width_in)
        b = torch.randn(layer["width"], generator=g) * 0.1
        if self.spelling == "nn.Linear":
            self.linear = nn.Linear(width_in, layer["width"])
            self.linear.weight.data.copy_(w)
            self.linear.bias.data.copy_(b)
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)
        self.w_kn = nn.Parameter(w.t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, w, b = self.spelling, self.w, self.b
        y = (self.linear(x) if s == "nn.Linear" else F.linear(x, w, b) if s == "F.linear"
             else x @ w.T + b if s == "x @ w.T + b" else torch.addmm(b, x, w.t()) if s == "addmm"
             else torch.matmul(x, w.t()) + b if s == "matmul + b" else x @ self.w_kn + b if s == "x @ w_kn + b"
             else x @ w.T)
        return activation(y, self.act, self.slope)


def activation(y: torch.Tensor, act: str, slope: float) -> torch.Tensor:
    if act == "leaky_relu":
        return F.leaky_relu(y, slope)
    if act in ("gelu", "gelu_tanh"):
        return F.gelu(y, approximate="tanh" if act == "gelu_tanh" else "none")
    plain = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu}
    return plain[act](y) if act in plain else y


class Lookup(nn.Module):
    """One table read in one spelling; forward(ids [B, L] or [B], per-sample weights or None)."""

    def __init__(self, lookup: Spec, g: torch.Generator) -> None:
        super().__init__()
        self.spelling, self.bag, self.twin = lookup["spelling"], lookup["bag"], lookup["twin"]
        table = torch.rand(lookup["rows"], lookup["dim"], generator=g) - 0.5
        if self.spelling.startswith("bag"):
            mode = "max" if self.spelling == "bag-max" else "mean" if self.spelling.endswith("mean") else "sum"
            self.table = nn.EmbeddingBag(lookup["rows"], lookup["dim"], mode=mode, _weight=table)
        elif self.spelling.startswith("embedding") or self.spelling == "single-id":
            self.table = nn.Embedding(lookup["rows"], lookup["dim"], _weight=table)
        else:
            self.weight = nn.Parameter(table)

    def share_table(self, other: Lookup) -> None:
        weight = other.table.weight if hasattr(other, "table") else other.weight
        if hasattr(self, "table"):
            self.table.weight = weight
        else:
            self.weight = weight

    def forward(self, ids: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        s = self.spelling
        if s in ("bag-sum", "bag-mean", "bag-max"):
            return self.table(ids)
        if s.startswith("bag-offsets"):
            return self.table(ids.flatten(), torch.arange(0, ids.numel(), self.bag))
        if s == "bag-weighted":
            return self.table(ids, per_sample_weights=weights)
        if s == "embedding-flat":
            return self.table(ids).flatten(1)
        if s == "single-id":
            return self.table(ids)
        rows = (self.table(ids) if s.startswith("embedding") else F.embedding(ids, self.weight)
                if s.startswith("F.embedding") else self.weight[ids] if s.startswith("index-")
                else self.weight.index_select(0, ids.reshape(-1)).view(-1, self.bag, self.weight.shape[1]))
        return rows.sum(1) if s.endswith("sum") else rows.mean(1)


def width_out(lookup: Spec) -> int:
    return lookup["dim"] * lookup["bag"] if lookup["spelling"] == "embedding-flat" else lookup["dim"]


class FuzzModel(nn.Module):
    """forward(dense?, ids..., per-sample weights...) -> one output or a tuple (one per head)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(spec["seed"])
        self.spec, slope = spec, spec["leaky_slope"]
        self.lookups = nn.ModuleList(Lookup(lk, g) for lk in spec["lookups"])
        for first, twin in zip(self.lookups, self.lookups[1:]):
            if twin.twin:
                twin.share_table(first)
        width = spec["dense"]
        self.bottom = nn.ModuleList()
        for layer in spec["bottom"]:
            self.bottom.append(Dense(layer, width, g, slope))
            width = layer["width"]
        widths = ([width] if spec["dense"] else []) + [width_out(lk) for lk in spec["lookups"]]
        dot = spec["interaction"] != "cat"
        self.stacked = [i for i, w in enumerate(widths) if w == spec["dot_dim"]] if dot else []
        n = len(self.stacked)
        li, lj = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)
        triu = torch.triu_indices(n, n)
        self.register_buffer("triu", triu[0] * n + triu[1], persistent=False)
        pairs = {"cat": 0, "dot-tril": len(li), "dot-triu": triu.shape[1], "dot-full": n * n}[spec["interaction"]]
        width = sum(w for i, w in enumerate(widths) if i not in self.stacked) + pairs
        self.view, self.view_args, width = _view(spec["view"], spec["view_at"], width)
        self.top = nn.ModuleList()
        for layer in spec["top"]:
            self.top.append(Dense(layer, width, g, slope))
            width = layer["width"]
        features_width = self.view_args[-1]
        self.heads = nn.ModuleList(Dense(h, width if h["source"] == "top" else features_width, g, slope)
                                   for h in spec["heads"])

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        dense, ids, weights = split_inputs(self.spec, inputs)
        parts = []
        if dense is not None:
            for layer in self.bottom:
                dense = layer(dense)
            parts.append(dense)
        parts += [lookup(i, w) for lookup, i, w in zip(self.lookups, ids, weights)]
        h = self._interact(parts)
        features = h = self._view(h)
        for layer, spec in zip(self.top, self.spec["top"]):
            h = layer(h) + h if spec["residual"] else layer(h)
        outs = tuple(head(h if spec["source"] == "top" else features)
                     for head, spec in zip(self.heads, self.spec["heads"]))
        return outs[0] if len(outs) == 1 else outs

    def _interact(self, parts: list[torch.Tensor]) -> torch.Tensor:
        rest = [p for i, p in enumerate(parts) if i not in self.stacked]
        if not self.stacked:
            return torch.cat(rest, dim=1)
        z = torch.stack([parts[i] for i in self.stacked], dim=1)
        zz = torch.bmm(z, z.transpose(1, 2))
        kind = self.spec["interaction"]
        pairs = zz[:, self.li, self.lj] if kind == "dot-tril" else zz.flatten(1).index_select(1, self.triu) \
            if kind == "dot-triu" else zz.flatten(1)
        return torch.cat(rest + [pairs], dim=1)

    def _view(self, h: torch.Tensor) -> torch.Tensor:
        kind, args = self.view, self.view_args
        if kind == "slice":
            return h[:, args[0]:args[1]:args[2]]
        if kind == "transpose":
            return h.unflatten(1, (args[0], args[1])).transpose(1, 2).flatten(1)
        if kind == "view-sum":
            return h.view(-1, args[0], args[1]).sum(1)
        return h


def _view(kind: str, at: int, width: int) -> tuple[str, tuple[int, ...], int]:
    """The view as it applies to `width` columns ("none" where it cannot), its static arguments and its
    output width (also the arguments' last element)."""
    factors = [a for a in range(2, width) if width % a == 0]
    if kind == "slice":
        start, step = at % width, 1 + at % 3
        stop = start + 1 + (at // 7) % (width - start)
        return kind, (start, stop, step, len(range(start, stop, step))), len(range(start, stop, step))
    if kind in ("transpose", "view-sum") and factors:
        a = factors[at % len(factors)]
        out = width if kind == "transpose" else width // a
        return kind, (a, width // a, out), out
    return "none", (width,), width


# -- inputs ----------------------------------------------------------------------------------------------
def split_inputs(spec: Spec, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, list[Any], list[Any]]:
    """(dense or None, the ids each lookup reads, the per-sample weights each lookup reads or None)."""
    rest = list(inputs)
    dense = rest.pop(0) if spec["dense"] else None
    lookups = spec["lookups"]
    if spec["shared_ids"]:
        ids, rest = [rest[0][:, t] for t in range(len(lookups))], rest[1:]
    else:
        ids = []
        for lk in lookups:  # a twin reads the ids of the lookup before it
            ids.append(ids[-1] if lk["twin"] else rest.pop(0))
    weights = [rest.pop(0) if lk["spelling"] == "bag-weighted" else None for lk in lookups]
    return dense, ids, weights


def _ids(lookup: Spec, shape: tuple[int, ...], g: torch.Generator, wraps: bool) -> torch.Tensor:
    rows = lookup["rows"]
    ids = torch.randint(-rows if wraps else 0, rows, shape, generator=g)
    ids.view(-1)[0] = rows - 1  # the largest valid id
    return ids


def _poison(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """1-3 NaN / inf / -inf at random places."""
    flat = t.view(-1)
    for _ in range(int(torch.randint(1, 4, (), generator=g))):
        k = int(torch.randint(0, flat.numel(), (), generator=g))
        flat[k] = (float("nan"), float("inf"), float("-inf"))[int(torch.randint(0, 3, (), generator=g))]
    return t


def make_inputs(spec: Spec, batch: int, seed: int, nan: bool = False) -> tuple[torch.Tensor, ...]:
    """Fresh seeded inputs at `batch`; `nan`: NaN/inf in the float inputs (dense, per-sample weights)."""
    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    if spec["dense"]:
        out.append(torch.randn(batch, spec["dense"], generator=g))
    lookups = spec["lookups"]
    if spec["shared_ids"]:
        out.append(torch.stack([_ids(lk, (batch, lk["bag"]), g, False) for lk in lookups], dim=1))
    else:
        out += [_ids(lk, (batch,) if lk["spelling"] == "single-id" else (batch, lk["bag"]), g,
                     lk["spelling"].startswith("index-")) for lk in lookups if not lk["twin"]]
    out += [torch.rand(batch, lk["bag"], generator=g) for lk in lookups if lk["spelling"] == "bag-weighted"]
    floats = [t for t in out if t.is_floating_point()]
    if nan and floats:
        _poison(floats[int(torch.randint(0, len(floats), (), generator=g))], g)
    return tuple(out)


def build(spec: Spec) -> FuzzModel:
    return FuzzModel(spec).eval()
