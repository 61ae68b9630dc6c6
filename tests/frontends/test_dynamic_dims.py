"""Dynamic dims the user's way: a torch.export spec with the user's Dim names, or inferred (dims that
follow the batch: dim 0, offsets [tables, B], flat id lists), checked against eager at other sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves

from recc.compiler.interpreter import interpret
from recc.bench.third_party_models import ReferenceDLRM, dlrm_inputs
from recc.frontends.torch_export import capture
from tests.conftest import FP32_ATOL, max_abs_error


@pytest.mark.parametrize("example_batch", [1, 4, 13])  # 13 collides with the dense feature width
def test_reference_dlrm_offsets_tables_by_batch_are_inferred(example_batch: int) -> None:
    torch.manual_seed(0)
    module = ReferenceDLRM().eval()
    graph = capture(module, dlrm_inputs(example_batch, 0))
    assert [str(v.type) for v in graph.inputs[:2]] == ["float32[batch, 13]", "int64[3, batch]"]
    assert all(not isinstance(v.type.shape[0], int) for v in graph.inputs[2:])  # id lists of any length
    for batch in (1, 6, 37):
        inputs = dlrm_inputs(batch, batch)
        with torch.no_grad():
            expected = module(*inputs)
        got = interpret(graph, [t.numpy() for t in tree_leaves(inputs)])[0]
        assert max_abs_error(got, expected) <= FP32_ATOL, batch


class Pooled(nn.Module):
    """Flat ids [batch * pooling] with a fixed pooling, reshaped to bags."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(40, 6)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        bags = self.table(ids).view(x.shape[0], -1, 6).sum(1)
        return x * bags


def test_user_dims_keep_their_names_and_derived_dims_are_checked() -> None:
    module = Pooled().eval()
    rows = torch.export.Dim("rows", min=1, max=4096)
    spec = {"x": {0: rows}, "ids": {0: 5 * rows}}
    graph = capture(module, (torch.randn(3, 6), torch.randint(0, 40, (15,))), dynamic_shapes=spec)
    assert [str(v.type) for v in graph.inputs] == ["float32[rows, 6]", "int64[5*rows]"]
    x, ids = torch.randn(7, 6), torch.randint(0, 40, (35,))
    got = interpret(graph, [x.numpy(), ids.numpy()])[0]
    assert max_abs_error(got, module(x, ids)) <= FP32_ATOL


def test_inferred_flat_ids_follow_the_batch() -> None:
    module = Pooled().eval()
    graph = capture(module, (torch.randn(4, 6), torch.randint(0, 40, (12,))))
    assert str(graph.inputs[0].type) == "float32[batch, 6]"
    x, ids = torch.randn(9, 6), torch.randint(0, 40, (27,))
    got = interpret(graph, [x.numpy(), ids.numpy()])[0]
    assert max_abs_error(got, module(x, ids)) <= FP32_ATOL


@pytest.mark.slow
def test_compiled_reference_dlrm_serves_two_batches_and_checks_its_dims() -> None:
    import recc

    torch.manual_seed(0)
    module = ReferenceDLRM().eval()
    compiled = recc.compile(module, dlrm_inputs(4, 0))
    for batch in (1, 64):
        inputs = dlrm_inputs(batch, batch)
        with torch.no_grad():
            expected = module(*inputs)
        assert max_abs_error(compiled(*inputs).numpy(), expected) <= FP32_ATOL
    dense, offsets, ids = dlrm_inputs(5, 1)
    with pytest.raises(ValueError, match="batch=4, but an earlier input has batch=5"):
        compiled(dense, offsets[:, :4], ids)
    with pytest.raises(ValueError, match="row 1: offsets must start at 0"):
        compiled(dense, torch.stack([offsets[0], offsets[1].flip(0) + 1, offsets[2]]), ids)
    with pytest.raises(ValueError, match="out of range"):
        compiled(dense, offsets, [ids[0] + 50, *ids[1:]])
    assert np.isfinite(compiled(*dlrm_inputs(3, 3)).numpy()).all()


def test_cli_dynamic_spec_parses_to_shared_and_derived_dims() -> None:
    from recc.frontends.torch_export.dynamic import parse_dynamic

    spec = parse_dynamic("x:0=rows, ids:0=5*rows")
    graph = capture(Pooled().eval(), (torch.randn(3, 6), torch.randint(0, 40, (15,))), dynamic_shapes=spec)
    assert [str(v.type) for v in graph.inputs] == ["float32[rows, 6]", "int64[5*rows]"]
    for bad in ("x0=rows", "x:a=rows", "x:0=2*", "x:0=0*rows", ""):
        with pytest.raises(ValueError, match="--dynamic"):
            parse_dynamic(bad)
    with pytest.raises(ValueError, match="forward does not take"):
        capture(Pooled().eval(), (torch.randn(3, 6), torch.randint(0, 40, (15,))),
                dynamic_shapes=parse_dynamic("dense:0=rows"))


def test_a_list_input_named_once_gets_a_dim_per_element() -> None:
    from recc.frontends.torch_export.dynamic import parse_dynamic

    spec = parse_dynamic("dense_x:0=rows,lS_o:1=rows,lS_i:0=nnz")
    graph = capture(ReferenceDLRM().eval(), dlrm_inputs(4, 0), dynamic_shapes=spec)
    assert [str(v.type) for v in graph.inputs] == ["float32[rows, 13]", "int64[3, rows]", "int64[nnz_0]",
                                                    "int64[nnz_1]", "int64[nnz_2]"]


@pytest.mark.slow
def test_recc_compile_takes_an_onnx_path_and_a_model_proto(tmp_path) -> None:
    import onnx

    import recc

    module = nn.Sequential(nn.Linear(5, 3), nn.ReLU()).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(module, (torch.randn(2, 5),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    x = torch.randn(7, 5)
    for model in (str(path), onnx.load(str(path))):
        compiled = recc.compile(model)
        assert max_abs_error(compiled(x).numpy(), module(x)) <= FP32_ATOL
    with pytest.raises(TypeError, match="ONNX model"):
        recc.compile(42)
