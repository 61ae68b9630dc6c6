"""Gathers that accept negative ids, compiled: torch.take (flat ids into a table; -numel <= id < numel, a
negative id wraps once) equals eager and refuses what eager refuses; ONNX Gather on a constant table
(ONNX: -rows <= index < rows) should equal ONNX Runtime. fp32, values copied exactly (atol 0)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from recc.api import compile_graph
from recc.frontends.onnx import import_onnx

import recc
from tests.frontends.test_torch_export import Take

ROWS, DIM = 40, 4


def test_take_compiled_wraps_negative_ids_and_refuses_what_eager_refuses() -> None:
    model = Take().eval()
    g = torch.Generator().manual_seed(0)
    compiled = recc.compile(model, (torch.randn(4, 2), torch.randint(-30, 30, (4, 2), generator=g)), tuning_db=None)
    for batch in (1, 7, 33):
        x, ids = torch.randn(batch, 2, generator=g), torch.randint(-30, 30, (batch, 2), generator=g)
        ids[0, 0], ids[-1, -1] = -30, 29  # both ends of the valid range
        with torch.no_grad():
            torch.testing.assert_close(compiled(x, ids), model(x, ids), rtol=0, atol=0)
    for bad in (30, -31):
        ids = torch.zeros(3, 2, dtype=torch.long)
        ids[1, 1] = bad
        with pytest.raises(IndexError):
            model(torch.randn(3, 2), ids)
        with pytest.raises(ValueError, match="out of range"):
            compiled(torch.randn(3, 2), ids)


def _onnx_gather() -> bytes:
    table = np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])
    out = helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 3, DIM])
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["rows"])], "g", [ids], [out],
                              initializer=[numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.xfail(strict=True, raises=ValueError, reason="ONNX Gather on a constant table becomes the IR's "
                   "`embedding` op, which has no wrap attribute: negative ids are refused at the call, where ONNX "
                   "(and ORT) read row id + rows. Refused, not wrong; supporting it means a wrap on embedding "
                   "through the passes and the lookup kernels")
def test_onnx_gather_on_a_constant_table_wraps_negative_ids_like_ort() -> None:
    data = _onnx_gather()
    compiled = compile_graph(import_onnx(data), "gather", tuning_db=None)
    ids = np.array([[0, -1, 5], [-ROWS, ROWS - 1, -7]], np.int64)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    np.testing.assert_array_equal(compiled(torch.from_numpy(ids)).numpy(), want)
