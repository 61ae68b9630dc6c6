"""ONNX frontend: the eight models exported by torch.onnx.export import into the same IR, optimize to the
same final ops as when captured from PyTorch (the EmbeddingBag Loop gone, DIEN's cells fused) and equal
eager and ONNX Runtime; `recc compile model.onnx` works; malformed files get clear errors.
fp32 tolerance: max abs error <= 1e-5 on probabilities."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from recc.cli import main as cli_main
from recc.compiler.interpreter import interpret
from recc.compiler.pass_manager import PassContext, run_pipeline
from recc.passes.pipeline import build_passes
from recc.frontends.onnx import OnnxImportError, UnsupportedOpError, import_onnx
from recc.frontends.torch_export import capture
from recc.models import create, names

import recc
from tests.conftest import FP32_ATOL, max_abs_error

SCALE = 0.001
# the legacy (TorchScript) exporter for all eight; the dynamo exporter (slower: 4-70 s a model here) for
# three that cover the EmbeddingBag Loop in its dynamo form, GatherND-free DLRM and DIN's masks
CASES = [(n, "legacy") for n in names()] + [(n, "dynamo") for n in ("dlrm-rmc1", "ncf", "din")]


def _export(model: torch.nn.Module, path: Path, exporter: str) -> Path:
    inputs = model.example_inputs(4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(model, inputs, str(path), input_names=list(model.input_names), dynamo=True,
                              dynamic_shapes=tuple({0: batch} for _ in inputs))
        else:
            torch.onnx.export(model, inputs, str(path), input_names=list(model.input_names), dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in model.input_names})
    return path


def _optimized(graph):
    run_pipeline(graph, build_passes(), PassContext())
    return graph


@pytest.mark.slow  # torch.export (and ONNX Runtime) of every model: tens of seconds
@pytest.mark.parametrize("name,exporter", CASES)
def test_exported_model_matches_pytorch_capture_eager_and_ort(name: str, exporter: str, tmp_path: Path) -> None:
    model = create(name, scale=SCALE, seed=0)
    path = _export(model, tmp_path / f"{name}.onnx", exporter)
    graph = _optimized(import_onnx(path))
    ops = graph.op_histogram()
    assert ops == _optimized(capture(model, model.example_inputs(4, seed=0))).op_histogram()
    assert "embedding_bag" not in ops and "take" not in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]
    for batch in (1, 7, 64):
        inputs = model.example_inputs(batch, seed=500 + batch)
        with torch.no_grad():
            want = model(*inputs)
        got = interpret(graph, [x.numpy() for x in inputs])[0]
        assert max_abs_error(got, want) <= FP32_ATOL, f"{name}/{exporter} batch {batch} vs eager"
        by_name = dict(zip(model.input_names, inputs))
        ort_out = session.run(None, {n: by_name[n].numpy() for n in feed_names})[0]
        assert max_abs_error(got, ort_out) <= FP32_ATOL, f"{name}/{exporter} batch {batch} vs ORT"


def test_cli_compiles_an_onnx_file_and_the_artifact_matches_eager(tmp_path: Path) -> None:
    model = create("ncf", scale=SCALE, seed=0)
    path = _export(model, tmp_path / "ncf.onnx", "legacy")
    assert cli_main(["compile", str(path), "-o", str(tmp_path / "ncf.recc")]) == 0
    compiled = recc.load(tmp_path / "ncf.recc")
    assert compiled.manifest.source["kind"] == "onnx"
    assert compiled.report["final_ops"].get("batched_embedding_bag") == 1
    for batch in (1, 7):
        inputs = model.example_inputs(batch, seed=9)
        with torch.no_grad():
            assert max_abs_error(compiled(*inputs), model(*inputs)) <= FP32_ATOL
    assert cli_main(["compile", str(path), "-o", str(tmp_path / "x.recc"), "--batch-dim", "nope"]) == 2


# -- malformed input ------------------------------------------------------------------------------------
def _tiny(op: str = "Relu", extra_input: str | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node(op, ["x"] + ([extra_input] if extra_input else []), ["y"], name=f"my_{op.lower()}")
    return helper.make_model(helper.make_graph([node], "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_tiny_model_imports() -> None:
    graph = import_onnx(_tiny())
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(interpret(graph, [x])[0], np.maximum(x, 0))


def test_not_onnx_and_truncated_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OnnxImportError, match="not a valid ONNX model|not an ONNX model"):
        import_onnx(b"this is not a protobuf at all \xff\xff")
    data = _tiny().SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxImportError, match="cut short|not a valid ONNX model|not an ONNX model"):
        import_onnx(cut)
    with pytest.raises(OnnxImportError, match="no ONNX file"):
        import_onnx(tmp_path / "missing.onnx")


def test_checker_failure_is_refused() -> None:
    with pytest.raises(OnnxImportError, match="onnx.checker"):
        import_onnx(_tiny("Add", extra_input="never_defined"))


def test_unsupported_op_names_the_node() -> None:
    model = _tiny("LpNormalization")  # well-formed (ONNX's inference passes it), but no converter
    with pytest.raises(UnsupportedOpError, match="my_lpnormalization") as info:
        import_onnx(model)
    assert "LpNormalization" in str(info.value)


def test_external_data_is_read_and_a_missing_file_is_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()).eval()
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, 64),), str(path), input_names=["x"], dynamo=False,
                          dynamic_axes={"x": {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="mlp.weights", size_threshold=0)
    assert (tmp_path / "mlp.weights").is_file()
    graph = _optimized(import_onnx(path))
    assert graph.op_histogram() == {"dense": 1}
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert max_abs_error(interpret(graph, [x.numpy()])[0], module(x)) <= FP32_ATOL
    (tmp_path / "mlp.weights").unlink()
    with pytest.raises(OnnxImportError, match="mlp.weights.*missing"):
        import_onnx(path)


def test_onnx_gru_op_becomes_dense_and_gru(tmp_path: Path) -> None:
    class Recurrent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.gru = torch.nn.GRU(5, 16, batch_first=True)

        def forward(self, x: torch.Tensor):
            return self.gru(x)

    module = Recurrent().eval()
    path = tmp_path / "gru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(3, 6, 5),), str(path), input_names=["x"], dynamo=False,
                          dynamic_axes={"x": {0: "batch"}})
    assert any(n.op_type == "GRU" for n in onnx.load(str(path)).graph.node)
    graph = _optimized(import_onnx(path))
    assert graph.op_histogram().get("gru") == 1
    x = torch.randn(7, 6, 5)
    with torch.no_grad():
        want = module(x)
    for got, expected in zip(interpret(graph, [x.numpy()]), want, strict=True):
        assert max_abs_error(got, expected) <= FP32_ATOL


def test_export_onnx_writes_the_optimized_graph(tmp_path: Path) -> None:
    model = create("dlrm-rmc1", scale=SCALE, seed=0)
    artifact = recc.compile(model, model.example_inputs(4, seed=0), name="rmc1").save(tmp_path / "rmc1.recc")
    out = tmp_path / "rmc1-optimized.onnx"
    assert cli_main(["export-onnx", str(artifact), "-o", str(out)]) == 0
    exported = onnx.load(str(out))
    onnx.checker.check_model(exported)
    ops = [n.op_type for n in exported.graph.node]
    assert {n.domain for n in exported.graph.node} == {"ai.recc"}
    assert ops.count("batched_embedding_bag") == 1 and ops.count("dot_interaction") == 1
    assert ops.count("dense") == recc.load(artifact).report["final_ops"]["dense"]
    dense = next(n for n in exported.graph.node if n.op_type == "dense")
    assert {a.name for a in dense.attribute} >= {"activation"}
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
