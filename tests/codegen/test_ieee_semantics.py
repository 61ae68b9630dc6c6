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
from tvm.script import tirx as T

import recc
from recc.compiler.codegen.tvm.kernels.cpu.common import activation_expr, fast_exp
from recc.compiler.codegen.tvm.target import resolve_target
from tests.ieee_cases import BATCHES, cases, poison

F = nn.functional
EAGER = {"none": lambda x: x, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu,
         "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
         "leaky_relu": lambda x: F.leaky_relu(x, 0.1)}

def _activation_lib(name: str, n: int):
    def expr(x):
        return fast_exp(x) if name == "exp" else activation_expr(name, x, 0.1)

    @T.prim_func
    def act(x: T.Buffer((n,), "float32"), y: T.Buffer((n,), "float32")):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        for i in T.vectorized(n):
            y[i] = expr(x[i])

    return tvm.compile(tvm.IRModule({"main": act}), target=resolve_target("cpu").to_tvm())


def test_fast_exp_on_special_values() -> None:
    """exp(NaN) = NaN, exp(+inf) = +inf, exp(-inf) = 0 exactly; 2e-7 relative on [-87.3, 88.37] (below
    -87.3 the result is 0 or a denormal, from 88.38 on +inf: see fast_exp)."""
    special = np.array([np.nan, np.inf, -np.inf, 100.0, -100.0], np.float32)
    finite = np.linspace(-87.3, 88.37, 251).astype(np.float32)
    x = np.concatenate([special, finite])
    y = tvm.runtime.tensor(np.zeros_like(x))
    _activation_lib("exp", x.size)["main"](tvm.runtime.tensor(x), y)
    got = y.numpy()
    np.testing.assert_array_equal(got[:5], [np.nan, np.inf, 0.0, np.inf, 0.0])
    np.testing.assert_allclose(got[5:], np.exp(finite.astype(np.float64)), rtol=2e-7)


@pytest.mark.parametrize("name", sorted(EAGER))
def test_activation_epilogue_on_special_values(name: str) -> None:
    x = np.concatenate([[np.nan, np.inf, -np.inf, 0.0, -0.0, 88.5, -88.5, 89.0, -89.0, 100.0, -100.0, 3e38, -3e38,
                         1e-40, -1e-40], np.linspace(-30, 30, 49)]).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros_like(x))
    _activation_lib(name, x.size)["main"](tvm.runtime.tensor(x), y)
    torch.testing.assert_close(torch.from_numpy(y.numpy()), EAGER[name](torch.from_numpy(x)), equal_nan=True,
                               atol=2e-6, rtol=2e-6)


def _check(module: nn.Module, make_inputs, fused: str | None = None, which: tuple[int, ...] | None = None,
           reference=None) -> None:
    module.eval()
    compiled = recc.compile(module, make_inputs(4, 0), tuning_db=None)
    if fused is not None:
        assert compiled.report["final_ops"].get(fused, 0) == 1, compiled.report["final_ops"]
    for batch in BATCHES:
        for xs in poison(make_inputs(batch, batch), seed=batch, which=which):
            with torch.no_grad():
                want = (reference or module)(*xs)
            got = torch.as_tensor(np.asarray(compiled(*xs)))
            torch.testing.assert_close(got, want, equal_nan=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(cases()))
def test_case(case: str) -> None:
    module, make_inputs, fused, which, reference = cases()[case]()
    _check(module, make_inputs, fused=fused, which=which, reference=reference)
