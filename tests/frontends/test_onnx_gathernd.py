"""ONNX GatherND with indices that are graph inputs (batch_dims 0 and 1, negative ids): interpreted and
compiled equal to ONNX Runtime; an id out of range on any indexed axis is refused at run time."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from recc.compiler.interpreter import interpret
from recc.frontends.onnx import import_onnx


def _model(batch_dims: int, data: list[int], idx: list[int], out: list[int]) -> onnx.ModelProto:
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, data),
                                            helper.make_tensor_value_info("i", TensorProto.INT64, idx)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


CASES = {
    "two_axes": (0, [3, 4, 5], [6, 2], [6, 5],
                 lambda g: np.stack([g.integers(-3, 3, 6), g.integers(-4, 4, 6)], -1)),
    "batch_dims_1": (1, [2, 4, 3, 2], [2, 5, 1], [2, 5, 3, 2], lambda g: g.integers(-4, 4, (2, 5, 1))),
    "every_axis": (0, [3, 4], [2, 3, 2], [2, 3], lambda g: np.stack([g.integers(0, 3, (2, 3)),
                                                                   g.integers(0, 4, (2, 3))], -1)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_gathernd_with_input_indices_matches_onnxruntime(name: str) -> None:
    import recc

    b, data, idx, out, make = CASES[name]
    g = np.random.default_rng(5)
    x, i = g.standard_normal(data).astype(np.float32), make(g).astype(np.int64)
    model = _model(b, data, idx, out)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x, "i": i})[0]
    np.testing.assert_array_equal(interpret(import_onnx(model), [x, i])[0], want)
    compiled = recc.compile(model)
    np.testing.assert_array_equal(np.asarray(compiled(x, i)), want)
    bad = i.copy()
    bad.reshape(-1)[-1] = data[b + i.shape[-1] - 1]  # one past the last indexed axis
    with pytest.raises(ValueError, match="out of range"):
        compiled(x, bad)
