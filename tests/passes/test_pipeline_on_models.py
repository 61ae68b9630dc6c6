"""The default pipeline on the eight models (captured at SCALE 0.001), interpreter only: the final ops are
exactly the ones recorded here, every rewrite is counted under a rule, and the optimized graph computes
what the eager model does (fp32, max abs error <= 1e-5). A change to any pass that changes what a model
compiles to shows up here without building a kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recc import models
from recc.compiler.interpreter import interpret
from recc.compiler.pass_manager import PassContext, run_pipeline
from recc.frontends.torch_export import capture
from recc.passes.pipeline import build_passes
from tests.conftest import FP32_ATOL, max_abs_error

SCALE = 0.001
FINAL_OPS = {
    "dlrm-rmc1": {"batched_embedding_bag": 1, "dense": 5, "dot_interaction": 1, "reshape": 1},
    "dlrm-rmc2": {"batched_embedding_bag": 1, "dense": 5, "dot_interaction": 1, "reshape": 1},
    "dlrm-rmc3": {"batched_embedding_bag": 1, "dense": 6, "dot_interaction": 1, "reshape": 1},
    "ncf": {"batched_embedding_bag": 1, "concat": 1, "dense": 5, "mul": 1, "reshape": 1, "slice": 3},
    "wnd": {"add": 2, "batched_embedding_bag": 1, "concat": 1, "dense": 5, "reshape": 1, "sigmoid": 1,
            "slice": 2, "sum": 1},
    "mt-wnd": {"batched_embedding_bag": 1, "concat": 2, "dense": 11, "reshape": 1, "sigmoid": 1},
    "din": {"batched_embedding_bag": 1, "concat": 2, "dense": 3, "embedding": 1, "mul": 1, "slice": 3,
            "softmax": 1, "sub": 1, "target_attention": 1},
    "dien": {"add": 1, "augru": 1, "batched_embedding_bag": 1, "concat": 2, "dense": 6, "gru": 1, "mul": 2,
             "reshape": 3, "slice": 4, "softmax": 2, "sub": 1, "sum": 1},
}

pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")


def test_every_model_is_listed() -> None:
    assert sorted(FINAL_OPS) == sorted(models.names())


@pytest.mark.parametrize("name", sorted(FINAL_OPS))
def test_pipeline_final_ops_and_numbers(name: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = models.create(name, scale=SCALE)
        graph = capture(model, model.example_inputs(4, seed=0))
        reports = run_pipeline(graph, build_passes(), PassContext())
        assert graph.op_histogram() == FINAL_OPS[name]
        assert sum(sum(r.rewrites.values()) for r in reports) > 0
        assert all(isinstance(n, int) and n > 0 for r in reports for n in r.rewrites.values())
        example = model.example_inputs(3, seed=1)
        with torch.no_grad():
            want = model(*example)
        got = interpret(graph, [np.asarray(x) for x in example])[0]
        assert max_abs_error(got, want) <= FP32_ATOL
    finally:
        torch.set_num_threads(threads)
