"""ONNX TopK (K an initializer; largest; axis) imported, interpreted and compiled, equal to ONNX Runtime
on inputs with heavy ties (ONNX: equal values in index order) and infinities; a computed K is refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from recc.compiler.interpreter import interpret
from recc.frontends.onnx import UnsupportedOpError, import_onnx


def _model(k: int | None, axis: int, largest: int, elem: int, shape: list[int]) -> onnx.ModelProto:
    inits = [helper.make_tensor("k", TensorProto.INT64, [1], [k])] if k is not None else []
    inputs = [helper.make_tensor_value_info("x", elem, shape)]
    if k is None:
        inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest)
    out = list(shape)
    out[axis] = k or 1
    graph = helper.make_graph([node], "topk", inputs, [helper.make_tensor_value_info("values", elem, out),
                                                       helper.make_tensor_value_info("indices", TensorProto.INT64, out)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


CASES = [(1, -1, 1), (4, -1, 0), (12, 1, 1), (3, 0, 1), (9, 0, 0)]


@pytest.mark.parametrize("k,axis,largest", CASES)
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_topk_matches_onnxruntime(k: int, axis: int, largest: int, dtype: str) -> None:
    import recc

    g = np.random.default_rng(k + axis)
    pool = np.array([np.inf, -np.inf, 0.0, 1.5, -2.0, 3.0, 1.5] if dtype == "float32" else [-3, 0, 2, 2, 5])
    x = pool[g.integers(0, len(pool), (9, 12))].astype(dtype)
    model = _model(k, axis, largest, TensorProto.FLOAT if dtype == "float32" else TensorProto.INT64, [9, 12])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got_ir = interpret(import_onnx(model), [x])
    got = recc.compile(model)(x)
    for outs in (got_ir, [np.asarray(o) for o in got]):
        for o, w in zip(outs, want):
            assert o.dtype == w.dtype and o.shape == w.shape
            np.testing.assert_array_equal(o, w)


def test_topk_with_a_k_computed_from_an_input_is_refused() -> None:
    with pytest.raises(UnsupportedOpError, match="TopK"):
        import_onnx(_model(None, -1, 1, TensorProto.FLOAT, [2, 5]))
