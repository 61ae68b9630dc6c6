"""A float64 model compiles and equals eager. Dense layers of a dtype recc has no kernel for go through the
generic lowering, whose activation epilogue read the dtype of a call not yet emitted: every float64
Linear + activation crashed the build with AttributeError (the ONNX fuzzer found it through an input
retyped to DOUBLE). fp64: max abs error <= 1e-10 on values of magnitude ~1; NaN where eager has NaN."""

from __future__ import annotations

import torch
from torch import nn

import recc

ACTIVATIONS = (nn.ReLU(), nn.Tanh(), nn.GELU(), nn.SiLU(), nn.LeakyReLU(0.2), nn.Sigmoid())


def test_float64_dense_layers_with_every_activation_equal_eager() -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for act in ACTIVATIONS:
        layers += [nn.Linear(6, 6), act]
    model = nn.Sequential(*layers).double().eval()
    compiled = recc.compile(model, (torch.randn(4, 6, dtype=torch.float64),), tuning_db=None)
    assert compiled.report["final_ops"] == {"dense": len(ACTIVATIONS)}
    for batch in (1, 9):
        x = torch.randn(batch, 6, dtype=torch.float64)
        x[0, 0] = float("nan")
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-10, equal_nan=True)
