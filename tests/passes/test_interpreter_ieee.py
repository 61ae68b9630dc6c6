"""The interpreter (the passes' oracle) on NaN, +inf and -inf, as eager PyTorch: each module of
tests/ieee_cases.py captured, run through the default pipeline (so the fused ops run: dense with its
activation, target_attention, attention, gru, augru, dot_interaction) and interpreted, at batches 1, 7
and 37. No TVM build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recc.compiler.interpreter import interpret
from recc.compiler.pass_manager import PassContext, run_pipeline
from recc.frontends.torch_export import capture
from recc.passes.pipeline import build_passes
from tests.ieee_cases import BATCHES, cases, poison

pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning", "ignore::RuntimeWarning")


def _check(module, make_inputs, fused: str | None = None, which=None, reference=None) -> None:
    module.eval()
    graph = capture(module, make_inputs(4, 0))
    run_pipeline(graph, build_passes(), PassContext())
    if fused is not None:
        assert graph.op_histogram().get(fused, 0) == 1, graph.op_histogram()
    for batch in BATCHES:
        for xs in poison(make_inputs(batch, batch), seed=batch, which=which):
            with torch.no_grad():
                want = (reference or module)(*xs)
            got = torch.from_numpy(interpret(graph, [np.asarray(x) for x in xs])[0])
            torch.testing.assert_close(got, want, equal_nan=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", sorted(cases()))
def test_case(case: str) -> None:
    module, make_inputs, fused, which, reference = cases()[case]()
    _check(module, make_inputs, fused=fused, which=which, reference=reference)
