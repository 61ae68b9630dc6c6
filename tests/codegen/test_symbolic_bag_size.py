"""An embedding_bag over ids whose bag size is symbolic: ids [batch, batch], as an ONNX model gets when
its bag dim is named like its batch dim (the ONNX fuzzer renamed DIN's profile_ids dim 1 to 'batch').
ONNX Runtime runs such a model. recc imports it (and batch-embedding-bags now declines the lookup), but
the fixed-layout gather kernel needs a static bag size: the build failed with TypeError. Such bags now
lower through the offsets kernel, with offsets b * L."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recc.api import compile_graph
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, sym


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_with_a_symbolic_bag_size_compiles_and_equals_the_interpreter(mode: str) -> None:
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("batch"), sym("batch")), "int64"))
    table = g.add_param("table", np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32))
    g.outputs = [g.add_node("embedding_bag", [table, ids], {"layout": "fixed", "mode": mode,
                                                            "has_weights": False}).output]
    want = interpret(g, [np.array([[1, 9, 0], [2, 2, 2], [0, 5, 7]])])[0]
    compiled = compile_graph(g, "bags", tuning_db=None)
    got = compiled(torch.tensor([[1, 9, 0], [2, 2, 2], [0, 5, 7]]))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError):  # the bag's ids are range-checked as every gather's are
        compiled(torch.tensor([[1, 10, 0], [2, 2, 2], [0, 5, 7]]))
    assert compiled(torch.zeros((1, 1), dtype=torch.int64)).shape == (1, 4)  # a bag of one, at batch 1
