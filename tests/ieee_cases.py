"""The modules and inputs the IEEE-semantics tests share (tests/codegen/test_ieee_semantics.py compiles
them, tests/passes/test_interpreter_ieee.py interprets them): NaN, +inf and -inf at seeded positions."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

F = nn.functional
BATCHES = (1, 7, 37)
SPECIALS = (float("nan"), float("inf"), float("-inf"))
MODULE_ACT = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "silu": nn.SiLU(), "gelu": nn.GELU(),
              "gelu_tanh": nn.GELU(approximate="tanh"), "leaky_relu": nn.LeakyReLU(0.1)}


def poison(inputs: tuple[torch.Tensor, ...], seed: int, which: tuple[int, ...] | None = None) -> list[tuple]:
    """Copies of `inputs` with specials in the float tensors (or those listed in `which`): one set per
    special value at 3 random positions, and one with all three."""
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for specials in [(s,) for s in SPECIALS] + [SPECIALS]:
        xs = [t.clone() for t in inputs]
        for i, t in enumerate(xs):
            if not t.is_floating_point() or (which is not None and i not in which):
                continue
            flat = t.view(-1)
            for k in range(3):
                flat[torch.randint(0, flat.numel(), (1,), generator=gen)] = specials[k % len(specials)]
        cases.append(tuple(xs))
    return cases


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class EmbeddingMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(50, 8)
        self.top = nn.Sequential(nn.Linear(8 + 6, 20), nn.ReLU(), nn.Linear(20, 3), nn.Sigmoid())

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.top(torch.cat([self.table(ids), dense], dim=1))


class TargetAttention(nn.Module):
    """DIN's attention unit on float keys and query: MLP(cat[k, q, k - q, k q]) scores, masked softmax."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * dim, 24), nn.Sigmoid(), nn.Linear(24, 8), nn.Sigmoid(), nn.Linear(8, 1))

    def forward(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        scores = self.mlp(torch.cat([keys, q, keys - q, keys * q], dim=2)).squeeze(2)
        weights = torch.softmax(scores + (mask - 1.0) * 1e9, dim=1)
        return (weights.unsqueeze(2) * keys).sum(dim=1)


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def math_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)



def dense_module(name: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 37), MODULE_ACT[name])


def embedding_inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
    return torch.randint(0, 50, (b,), generator=torch.Generator().manual_seed(s)), randn(b, 6, seed=s)


def attention_unit_inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
    mask = (torch.rand(b, 10, generator=torch.Generator().manual_seed(s)) < 0.7).float()
    return randn(b, 10, 16, seed=s), randn(b, 16, seed=s + 1), mask


def sdpa_inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
    return randn(b, 2, 4, 8, seed=s), randn(b, 2, 5, 8, seed=s + 1), randn(b, 2, 5, 8, seed=s + 2)


def gru_inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
    return (randn(b, 5, 8, seed=s),)


def augru_inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
    return randn(b, 5, 8, seed=s), torch.rand(b, 5, generator=torch.Generator().manual_seed(s))


def seeded(module_type: type, *args: int) -> nn.Module:
    torch.manual_seed(0)
    return module_type(*args)


def _dot_interaction_case() -> tuple:
    from recc.models import create

    model = create("dlrm-rmc1", scale=0.001, seed=0)
    return model, lambda b, s: model.example_inputs(b, seed=s), "dot_interaction", None, None


def cases() -> dict[str, Callable[[], tuple]]:
    """name -> () -> (module, make_inputs(batch, seed), fused op or None, poisoned inputs or None, reference)."""
    table: dict[str, Callable[[], tuple]] = {
        f"dense-{name}": (lambda name=name: (dense_module(name), lambda b, s: (randn(b, 12, seed=s),), "dense",
                                              None, None))
        for name in sorted(MODULE_ACT)}
    table.update({
        "embedding-mlp": lambda: (seeded(EmbeddingMLP), embedding_inputs, None, None, None),
        "target-attention": lambda: (seeded(TargetAttention), attention_unit_inputs, "target_attention", (0, 1),
                                     None),
        "sdpa": lambda: (Attention(), sdpa_inputs, "attention", None, math_sdpa),
        "gru": lambda: (seeded(_recurrent("GRU"), 8, 16), gru_inputs, "gru", None, None),
        "augru": lambda: (seeded(_recurrent("AUGRU"), 8, 16), augru_inputs, "augru", None, None),
        "dot-interaction": _dot_interaction_case,
    })
    return table


def _recurrent(name: str) -> type:
    from recc.models import recurrent

    return getattr(recurrent, name)
