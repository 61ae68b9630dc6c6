"""NaN and +-inf through the ops TVM's generic lowering runs (no recc kernel), as eager PyTorch: TVM legalizes
max / min to selects that drop a NaN operand (relu, clamp, maximum, the max reductions), so
lowering/generic.py spells those to keep it. Batches 1, 7 and 37, NaN, +inf and -inf at seeded positions
and one whole row of NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import recc

F = nn.functional
OPS = {
    "relu": lambda x: torch.relu(2 * x), "clamp": lambda x: torch.clamp(x, -1.0, 1.0),
    "clamp_min": lambda x: torch.clamp(x, min=0.5), "hardtanh": F.hardtanh,
    "maximum": lambda x: torch.maximum(x, x[:, :1]), "minimum": lambda x: torch.minimum(x[:, 3:4], x),
    "amax": lambda x: x.amax(1), "amin": lambda x: x.amin(1), "softmax": lambda x: torch.softmax(x, 1),
    "log_softmax": lambda x: torch.log_softmax(x, 1), "sigmoid": lambda x: torch.sigmoid(2 * x),
    "tanh": lambda x: torch.tanh(2 * x), "gelu": lambda x: F.gelu(2 * x),
    "gelu_tanh": lambda x: F.gelu(2 * x, approximate="tanh"), "silu": lambda x: F.silu(2 * x),
}


class Op(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return OPS[self.name](x)


@pytest.mark.parametrize("name", sorted(OPS))
def test_generic_op_keeps_nan_and_inf(name: str) -> None:
    module = Op(name)
    compiled = recc.compile(module, (torch.randn(4, 20),), tuning_db=None)
    gen = torch.Generator().manual_seed(len(name))
    for batch in (1, 7, 37):
        x = torch.randn(batch, 20, generator=gen)
        for special in (float("nan"), float("inf"), float("-inf")):
            x.view(-1)[torch.randint(0, x.numel(), (2,), generator=gen)] = special
        x[batch // 2, :] = float("nan") if batch > 1 else x[0]
        got = torch.as_tensor(np.asarray(compiled(x)))
        torch.testing.assert_close(got, module(x), equal_nan=True, atol=1e-5, rtol=1e-5)
