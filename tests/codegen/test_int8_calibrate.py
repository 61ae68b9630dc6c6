"""Static int8 activations (`calibrate=N`): the static quantize step of the int8 kernels against its numpy
semantics (recc/compiler/quantize.py, `act`), calibration itself, a calibrated model end to end, and the
argument checks. A kernel whose instructions this CPU lacks is skipped (never run: SIGILL)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recc
from recc.cli import main as cli_main
from recc.compiler.calibration import CALIBRATION_SEED, calibrate
from recc.compiler.codegen.tvm.kernels.cpu import dense_int8 as d8
from recc.compiler.codegen.tvm.lowering.dense import INT8_KERNELS, INT8_PACKING, INT8_SCRATCH, int8_kernel
from recc.compiler.codegen.tvm.target import resolve_target
from recc.compiler.host import request_amx
from recc.compiler.interpreter import interpret
from recc.compiler.quantize import dense_int8, range_params
from recc.compiler.report import format_report
from recc.models import create

TARGET = resolve_target("cpu")
NEEDS = {"amx": ("amx-tile", "amx-int8"), "vnni": ("avx512vnni", "avx512bw"), "avx2": ("avx2",)}
KERNEL_ATOL = 1e-4  # the kernels vs the numpy semantics: fp32 rounding of the epilogue (outputs ~1-10)
INT8_VS_EAGER = 3e-2  # int8 models vs eager fp32 (sigmoid outputs): the quantization error itself


def _run_kernel(kind: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, act) -> np.ndarray:
    import tvm

    m, k = x.shape
    n = w.shape[0]
    func = INT8_KERNELS[kind](k, n, "none", 0.01, act)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=TARGET.to_tvm())
    dev = tvm.cpu()
    packed = d8.pack_int8(w, b, *INT8_PACKING[kind])
    y = tvm.runtime.tensor(np.full((m, n), -7.0, np.float32), dev)  # an unwritten output fails
    lib["main"](tvm.runtime.tensor(x, dev), *[tvm.runtime.tensor(packed[p], dev) for p in ("w", "scale", "colsum", "bias")],
                tvm.runtime.tensor(d8.tile_config(), dev), y,
                tvm.runtime.tensor(np.full((d8.scratch_rows(m, kind), d8.row_stride(k)), 9, INT8_SCRATCH[kind]), dev),
                tvm.runtime.tensor(np.zeros((d8.scratch_rows(m, kind), 2), np.float32), dev))
    return y.numpy()


@pytest.mark.parametrize("kind", ["amx", "vnni", "avx2"])
@pytest.mark.parametrize("m,k,n", [(1, 64, 1), (37, 13, 50), (64, 128, 16), (70, 200, 96), (256, 512, 33)])
def test_static_kernel_matches_the_static_semantics(kind: str, m: int, k: int, n: int) -> None:
    if not TARGET.has(*NEEDS[kind]):
        pytest.skip(f"this CPU lacks {NEEDS[kind]}")
    if kind == "amx":
        assert request_amx()
    rng = np.random.default_rng(m * 1000 + n)
    calib = rng.standard_normal((16, k)).astype(np.float32) + 0.5  # lo > -0.5 or so, zp > 0
    scale, _, zp = range_params(min(0, calib.min()), max(0, calib.max()))
    act = (float(scale), float(zp))
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0] *= 4  # outside the calibrated range: clamps to 0 and 255
    if m > 2:
        x[1, 0], x[2, k - 1] = np.nan, -np.inf  # rows with NaN or inf: all-NaN outputs
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    want, got = dense_int8(x, w, b, act), _run_kernel(kind, x, w, b, act)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=KERNEL_ATOL, rtol=1e-5)


def test_calibrate_records_each_int8_layer_range() -> None:
    model = create("wnd", scale=0.01, seed=0)
    graph = recc.api.capture(model, model.example_inputs(4, seed=0))
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", "vnni")))
    fp32 = graph.clone()
    rows = [t.numpy() for t in model.example_inputs(64, seed=CALIBRATION_SEED)]
    section = calibrate(graph, rows)
    assert section["rows"] == 64 and len(section["layers"]) == 5
    seen: dict[str, np.ndarray] = {}
    for node in fp32.nodes:
        node.attrs["precision"] = "fp32"
    interpret(fp32, rows, lambda node, args: seen.setdefault(node.inputs[1].name, args[0])
              if node.op == "dense" else None)  # every layer's input in fp32, as calibration sees it
    for name, entry in section["layers"].items():
        lo, hi = min(0.0, float(seen[name].min())), max(0.0, float(seen[name].max()))
        assert entry["range"] == [lo, hi]
        assert entry["scale"] == pytest.approx((hi - lo) / 255, rel=1e-6)
        assert entry["zero_point"] == np.floor(-lo / entry["scale"] + 0.5)
    assert all(n.attrs["precision"] == "int8" and "act_scale" in n.attrs for n in graph.nodes if n.op == "dense")


def test_auto_chooses_layers_under_the_static_semantics() -> None:
    from recc.compiler.accuracy import PrecisionConfig
    from recc.precision import choose_precision

    model = create("wnd", scale=0.01, seed=0)
    graph = recc.api.capture(model, model.example_inputs(4, seed=0))
    fp32 = graph.clone()
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", "vnni")))
    held = [t.numpy() for t in model.example_inputs(64, seed=1)]
    rows = [t.numpy() for t in model.example_inputs(32, seed=CALIBRATION_SEED)]
    section = choose_precision(graph, fp32, PrecisionConfig("auto", max_error=1e-3, calibrate=32), held,
                               lambda msg: None, rows)
    assert section["auto_kept_fp32"] and section["calibration"]["rows"] == 32
    assert section["activations"] == {name: "static (calibrated on 32 rows)" for name in section["layers"]}
    assert not set(section["auto_kept_fp32"]) & set(section["activations"])
    got = interpret(graph, held)[0]  # the static semantics of the layers auto kept int8: within its bound
    assert np.abs(got - interpret(fp32, held)[0]).max() <= 1e-3


@pytest.fixture(scope="module")
def calibrated():
    if int8_kernel(TARGET) is None:
        pytest.skip("this CPU has no int8 dot product (AMX-INT8 or AVX512-VNNI)")
    model = create("wnd", scale=0.01, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None, precision="int8", calibrate=128)
    graph = recc.api.capture(model, model.example_inputs(4, seed=0))
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", int8_kernel(TARGET))))
    params = compiled.report["precision"]["calibration"]["layers"]
    for node in graph.nodes:  # the semantics of the scales and zero points the artifact reports
        if node.op == "dense":
            entry = params[node.inputs[1].name]
            node.attrs.update(act_scale=entry["scale"], act_zero_point=entry["zero_point"])
    return model, compiled, graph


@pytest.mark.parametrize("batch", [1, 64, 200])
def test_calibrated_model_matches_its_semantics_and_eager(calibrated, batch: int) -> None:
    model, compiled, graph = calibrated
    inputs = model.example_inputs(batch, seed=batch)
    inputs[0][0, :2] = torch.tensor([50.0, -50.0])  # beyond the calibrated range: clamped
    if batch > 1:
        inputs[0][1, 0] = float("nan")  # a NaN row: NaN outputs
    got = compiled(*inputs).numpy()
    want = interpret(graph, [t.numpy() for t in inputs])[0]
    np.testing.assert_allclose(got, want, atol=KERNEL_ATOL)
    assert np.isnan(got[1:2]).all() and not np.isnan(got[0]).any() and not np.isnan(got[2:]).any()
    with torch.no_grad():
        eager = model(*inputs).numpy()
    assert np.abs(got[2:] - eager[2:]).max(initial=0) < INT8_VS_EAGER


def test_calibrated_report_says_static(calibrated) -> None:
    _, compiled, _ = calibrated
    section = compiled.report["precision"]
    assert section["activations"] == {name: "static (calibrated on 128 rows)" for name in section["layers"]}
    assert section["calibration"]["rows"] == 128 and set(section["calibration"]["layers"]) == set(section["layers"])
    assert "int8 activations: static (calibrated on 128 rows): " in format_report(compiled.report)
    kernels = compiled.report["kernels"]
    assert kernels.get("dense_int8_amx_static", 0) + kernels.get("dense_int8_vnni_static", 0) == 5
    assert 0 < section["accuracy"]["max_abs"] < INT8_VS_EAGER


def test_calibrate_refuses_bad_arguments() -> None:
    model = create("wnd", scale=0.01, seed=0)
    examples = model.example_inputs(4, seed=0)
    for precision in ("fp32", "bf16"):
        with pytest.raises(ValueError, match="it needs precision int8 or auto"):
            recc.compile(model, examples, tuning_db=None, precision=precision, calibrate=64)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="calibrate must be a positive number of rows"):
            recc.compile(model, examples, tuning_db=None, precision="int8", calibrate=bad)


def test_onnx_without_examples_refuses_calibrate(tmp_path) -> None:
    with pytest.raises(ValueError, match="calibrate=N draws calibration rows like the example inputs"):
        recc.compile(str(tmp_path / "m.onnx"), precision="int8", calibrate=64)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    assert cli_main(["compile", str(path), "-o", str(tmp_path / "m.recc"), "--precision", "int8",
                     "--calibrate", "64"]) == 2


def test_cli_passes_calibrate_on(monkeypatch, tmp_path) -> None:
    seen = {}

    def fake_compile(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(recc.api, "compile", fake_compile)
    assert cli_main(["compile", "wnd", "-o", str(tmp_path / "w.recc"), "--precision", "int8",
                     "--calibrate", "300"]) == 2
    assert seen["calibrate"] == 300 and seen["precision"] == "int8"
