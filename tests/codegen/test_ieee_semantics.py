"""NaN and +-inf through every fused CPU kernel, as eager PyTorch: the activation epilogues on exact special
values, and compiled modules (dense + each activation, nn.Embedding + dense, DIN's target attention,
scaled-dot-product attention, GRU, AUGRU, DLRM's dot interaction) fed NaN, +inf and -inf at seeded random
positions at batches 1, 7 (not a multiple of the register tile) and 37. Compared with
`torch.testing.assert_close(equal_nan=True)`, which also requires infinities of the same sign.

Eager references: torch's CPU gelu (erf) returns NaN at +-inf, and recc does the same. For
scaled_dot_product_attention the reference is torch's math backend: its fused CPU (flash) kernel returns 0
for a query row whose scores are NaN, the math definition (and the spelled-out softmax(q k^T) v that
torch.export hands recc) returns NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tvm.script import tirx as T

import recc
from recc.compiler.codegen.tvm.kernels.cpu.common import activation_expr
from recc.compiler.codegen.tvm.target import resolve_target
from recc.models import create
from recc.models.recurrent import AUGRU, GRU

F = nn.functional
BATCHES = (1, 7, 37)
SPECIALS = (float("nan"), float("inf"), float("-inf"))
EAGER = {"none": lambda x: x, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu,
         "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
         "leaky_relu": lambda x: F.leaky_relu(x, 0.1)}
MODULE_ACT = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "silu": nn.SiLU(), "gelu": nn.GELU(),
              "gelu_tanh": nn.GELU(approximate="tanh"), "leaky_relu": nn.LeakyReLU(0.1)}


def _activation_lib(name: str, n: int):
    @T.prim_func
    def act(x: T.Buffer((n,), "float32"), y: T.Buffer((n,), "float32")):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        for i in T.vectorized(n):
            y[i] = activation_expr(name, x[i], 0.1)

    return tvm.compile(tvm.IRModule({"main": act}), target=resolve_target("cpu").to_tvm())


@pytest.mark.parametrize("name", sorted(EAGER))
def test_activation_epilogue_on_special_values(name: str) -> None:
    x = np.concatenate([[np.nan, np.inf, -np.inf, 0.0, -0.0, 88.5, -88.5, 89.0, -89.0, 100.0, -100.0, 3e38, -3e38,
                         1e-40, -1e-40], np.linspace(-30, 30, 49)]).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros_like(x))
    _activation_lib(name, x.size)["main"](tvm.runtime.tensor(x), y)
    torch.testing.assert_close(torch.from_numpy(y.numpy()), EAGER[name](torch.from_numpy(x)), equal_nan=True,
                               atol=2e-6, rtol=2e-6)


def _poison(inputs: tuple[torch.Tensor, ...], seed: int, which: tuple[int, ...] | None = None) -> list[tuple]:
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


def _check(module: nn.Module, make_inputs, fused: str | None = None, which: tuple[int, ...] | None = None,
           reference=None) -> None:
    module.eval()
    compiled = recc.compile(module, make_inputs(4, 0), tuning_db=None)
    if fused is not None:
        assert compiled.report["final_ops"].get(fused, 0) == 1, compiled.report["final_ops"]
    for batch in BATCHES:
        for xs in _poison(make_inputs(batch, batch), seed=batch, which=which):
            with torch.no_grad():
                want = (reference or module)(*xs)
            got = torch.as_tensor(np.asarray(compiled(*xs)))
            torch.testing.assert_close(got, want, equal_nan=True, atol=1e-5, rtol=1e-5)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(MODULE_ACT))
def test_dense_epilogue(name: str) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(12, 37), MODULE_ACT[name])
    _check(module, lambda b, s: (_randn(b, 12, seed=s),), fused="dense")


class EmbeddingMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(50, 8)
        self.top = nn.Sequential(nn.Linear(8 + 6, 20), nn.ReLU(), nn.Linear(20, 3), nn.Sigmoid())

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.top(torch.cat([self.table(ids), dense], dim=1))


def test_embedding_model() -> None:
    torch.manual_seed(0)
    _check(EmbeddingMLP(), lambda b, s: (torch.randint(0, 50, (b,), generator=torch.Generator().manual_seed(s)),
                                         _randn(b, 6, seed=s)))


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


def test_target_attention() -> None:
    torch.manual_seed(0)

    def inputs(b: int, s: int) -> tuple[torch.Tensor, ...]:
        mask = (torch.rand(b, 10, generator=torch.Generator().manual_seed(s)) < 0.7).float()
        return _randn(b, 10, 16, seed=s), _randn(b, 16, seed=s + 1), mask

    _check(TargetAttention(), inputs, fused="target_attention", which=(0, 1))


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def _math_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def test_scaled_dot_product_attention() -> None:
    _check(Attention(), lambda b, s: (_randn(b, 2, 4, 8, seed=s), _randn(b, 2, 5, 8, seed=s + 1),
                                      _randn(b, 2, 5, 8, seed=s + 2)), fused="attention", reference=_math_sdpa)


def test_gru() -> None:
    torch.manual_seed(0)
    _check(GRU(8, 16), lambda b, s: (_randn(b, 5, 8, seed=s),), fused="gru")


def test_augru() -> None:
    torch.manual_seed(0)
    _check(AUGRU(8, 16), lambda b, s: (_randn(b, 5, 8, seed=s), torch.rand(b, 5)), fused="augru")


def test_dot_interaction() -> None:
    model = create("dlrm-rmc1", scale=0.001, seed=0)
    _check(model, lambda b, s: model.example_inputs(b, seed=s), fused="dot_interaction")
