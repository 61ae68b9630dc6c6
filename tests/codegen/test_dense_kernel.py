"""The hand-scheduled dense kernel vs torch: activations, N not a multiple of 16, rows not a multiple of the
register tile (4, and 8 as on AVX-512), batch 1, square weights (where transposition bugs hide). fp32, tolerance scaled to the K-long sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm

from recc.compiler.codegen.tvm.kernels.cpu.common import pack_weight
from recc.compiler.codegen.tvm.kernels.cpu.dense import dense_kernel
from recc.compiler.codegen.tvm.target import resolve_target

TORCH_ACT = {"none": lambda x: x, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
             "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
             "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.1)}


def build(k: int, n: int, act: str, rows: int = 4, vector: int = 16):
    func = dense_kernel(k, n, act, alpha=0.1, rows=rows, vector=vector)
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                       target=resolve_target("cpu").to_tvm())


@pytest.mark.parametrize("k,n,act,rows,vector", [
    (32, 32, "relu", 4, 16), (13, 1, "sigmoid", 4, 16), (100, 37, "gelu", 4, 16), (64, 48, "leaky_relu", 4, 16),
    (16, 16, "none", 4, 16), (24, 20, "tanh", 4, 16), (40, 64, "silu", 4, 16), (40, 17, "gelu_tanh", 4, 16),
    (32, 32, "relu", 8, 16), (100, 37, "sigmoid", 8, 16),  # AVX-512 tiles
    (32, 64, "relu", 6, 32), (100, 80, "sigmoid", 6, 32), (7, 5, "none", 6, 32),
    (512, 400, "relu", 6, 32), (512, 400, "relu", 8, 16)])  # leftover rows in parallel (> 200k MACs)
def test_dense_kernel_matches_torch(k: int, n: int, act: str, rows: int, vector: int) -> None:
    lib = build(k, n, act, rows, vector)
    rng = np.random.default_rng(k * 1000 + n)
    weight = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for m in (*range(1, 14), 64, 67) if rows > 4 else (1, 3, 4, 7, 8, 9, 64, 67):  # every leftover
        x = rng.standard_normal((m, k)).astype(np.float32)
        y = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32))  # an output left unwritten fails
        lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_weight(weight, vector)), tvm.runtime.tensor(bias), y)
        expected = TORCH_ACT[act](torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(weight),
                                                             torch.from_numpy(bias))).numpy()
        np.testing.assert_allclose(y.numpy(), expected, atol=1e-5, rtol=1e-5, err_msg=f"m={m}")


def test_pack_weight_layout() -> None:
    w = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    packed = pack_weight(w)
    assert packed.shape == (2, 3, 16)
    assert packed[1, 2, 3] == w[19, 2] and packed[1, 0, 4] == 0  # row 20 is padding
