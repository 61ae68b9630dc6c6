"""The int8 dense kernels (AMX, AVX512-VNNI and AVX2) against the numpy semantics they implement
(recc/compiler/quantize.py), and int8 models end to end. A kernel whose instructions this CPU lacks is
skipped (the reason says which): never run, since it would die with SIGILL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recc
from recc.compiler.accuracy import PrecisionError
from recc.compiler.codegen.tvm.kernels.cpu import dense_int8 as d8
from recc.compiler.codegen.tvm.lowering.dense import INT8_KERNELS, INT8_PACKING, INT8_SCRATCH, int8_kernel
from recc.compiler.codegen.tvm.target import resolve_target
from recc.compiler.host import request_amx
from recc.compiler.interpreter import interpret
from recc.compiler.quantize import dense_int8
from recc.models import create

TARGET = resolve_target("cpu")
NEEDS = {"amx": ("amx-tile", "amx-int8"), "vnni": ("avx512vnni", "avx512bw"), "avx2": ("avx2",)}
KERNEL_ATOL = 1e-4  # the kernels vs the numpy semantics: fp32 rounding of the epilogue (outputs ~1-10)
INT8_VS_EAGER = 3e-2  # int8 models vs eager fp32 (sigmoid outputs): the quantization error itself


def _build(func):
    import tvm

    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                       target=TARGET.to_tvm())["main"]


@pytest.mark.parametrize("kind", ["amx", "vnni", "avx2"])
@pytest.mark.parametrize("m,k,n", [(1, 64, 1), (37, 13, 50), (64, 128, 16), (70, 200, 96), (256, 512, 33), (7, 96, 48)])
def test_kernel_matches_the_int8_semantics(kind: str, m: int, k: int, n: int) -> None:
    import tvm

    if not TARGET.has(*NEEDS[kind]):
        pytest.skip(f"this CPU lacks {NEEDS[kind]}")
    if kind == "amx":
        assert request_amx()
    rng = np.random.default_rng(m * 1000 + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    if m > 2:
        x[1, 0], x[2, k - 1] = np.nan, np.inf  # rows with NaN or inf: all-NaN outputs
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    dev = tvm.cpu()
    packed = d8.pack_int8(w, b, *INT8_PACKING[kind])
    y = tvm.runtime.tensor(np.full((m, n), -7.0, np.float32), dev)  # an unwritten output fails
    _build(INT8_KERNELS[kind](k, n, "none"))(
        tvm.runtime.tensor(x, dev), *[tvm.runtime.tensor(packed[p], dev) for p in ("w", "scale", "colsum", "bias")],
        tvm.runtime.tensor(d8.tile_config(), dev), y,
        tvm.runtime.tensor(np.zeros((d8.scratch_rows(m, kind), d8.row_stride(k)), INT8_SCRATCH[kind]), dev),  # scratch
        tvm.runtime.tensor(np.zeros((d8.scratch_rows(m, kind), 2), np.float32), dev))
    want, got = dense_int8(x, w, b), y.numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=KERNEL_ATOL, rtol=1e-5)


@pytest.fixture(scope="module")
def rmc3():
    if int8_kernel(TARGET) is None:
        pytest.skip("this CPU has no int8 dot product (AMX-INT8 or AVX512-VNNI)")
    model = create("dlrm-rmc3", scale=0.01, seed=0)
    return model, recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None, precision="int8")


@pytest.mark.parametrize("batch", [1, 64, 256])
def test_int8_model_matches_its_semantics_and_eager(rmc3, batch: int) -> None:
    model, compiled = rmc3
    inputs = model.example_inputs(batch, seed=batch)
    got = compiled(*inputs).numpy()
    graph = recc.api.capture(model, model.example_inputs(4, seed=0))
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", int8_kernel(TARGET))))
    want = interpret(graph, [t.numpy() for t in inputs])[0]
    np.testing.assert_allclose(got, want, atol=KERNEL_ATOL)
    with torch.no_grad():
        eager = model(*inputs).numpy()
    assert np.abs(got - eager).max() < INT8_VS_EAGER


def test_int8_report_names_layers_and_accuracy(rmc3) -> None:
    _, compiled = rmc3
    section = compiled.report["precision"]
    assert set(section["layers"].values()) == {"int8"} and len(section["layers"]) == 6
    accuracy = section["accuracy"]
    assert 0 < accuracy["max_abs"] < INT8_VS_EAGER and accuracy["rows"] == 256
    assert set(accuracy["per_layer_max_abs"]) == set(section["layers"])
    assert compiled.report["kernels"].get("dense_int8_amx", 0) + compiled.report["kernels"].get("dense_int8_vnni", 0) == 6


def test_keep_fp32_and_max_error_and_auto() -> None:
    if int8_kernel(TARGET) is None:
        pytest.skip("this CPU has no int8 dot product")
    model = create("wnd", scale=0.01, seed=0)
    examples = model.example_inputs(4, seed=0)
    kept = recc.compile(model, examples, tuning_db=None, precision="int8", keep_fp32=["deep.0", "wide_dense"])
    assert set(kept.report["precision"]["layers"]) == {"deep_2_weight", "deep_4_weight", "deep_6_weight"}
    with pytest.raises(PrecisionError, match="exceeds --max-error 1e-07; the layer contributing most is"):
        recc.compile(model, examples, tuning_db=None, precision="int8", max_error=1e-7)
    auto = recc.compile(model, examples, tuning_db=None, precision="auto", max_error=1e-3)
    section = auto.report["precision"]
    assert section["auto_kept_fp32"] and section["accuracy"]["max_abs"] <= 1.5e-3  # interpreter-chosen bound
    rejects = next(p["rejects"] for p in auto.report["passes"] if p["name"] == "quantize-dense")
    assert any("int8 does not pay" in reason for reason in rejects)  # the [1, 256] output layer stays fp32
    assert "deep_6_weight" not in section["layers"]
    assert list(section["tables"].values()) == ["bf16"]  # auto_table_format: 16-wide rows, bf16's 32 bytes one line
    inputs = model.example_inputs(32, seed=9)
    with torch.no_grad():
        assert np.abs(auto(*inputs).numpy() - model(*inputs).numpy()).max() < 5e-3


def test_cpu_without_amx_gets_vnni_then_avx2_and_without_avx2_stays_fp32() -> None:
    from recc.compiler.codegen.tvm.target import TargetSpec

    model = create("wnd", scale=0.01, seed=0)
    examples, inputs = model.example_inputs(4, seed=0), model.example_inputs(50, seed=3)
    if TARGET.has("avx512vnni", "avx512bw"):  # an Ice Lake server: AVX512-VNNI, no AMX
        vnni = recc.compile(model, examples, target=TargetSpec("cpu", "icelake-server", 2), tuning_db=None,
                            precision="int8")
        assert vnni.report["kernels"].get("dense_int8_vnni") == 5 and "dense_int8_amx" not in vnni.report["kernels"]
        assert "amx-tile" not in vnni.manifest.target.features
        with torch.no_grad():
            assert np.abs(vnni(*inputs).numpy() - model(*inputs).numpy()).max() < INT8_VS_EAGER
    # Haswell (AVX2, no int8 dot product): the vpmaddwd kernel, the same numbers as the others
    avx2 = recc.compile(model, examples, target=TargetSpec("cpu", "haswell", 2), tuning_db=None, precision="int8")
    assert avx2.report["kernels"].get("dense_int8_avx2") == 5
    assert "avx512f" not in avx2.manifest.target.features and "avx2" in avx2.manifest.target.features
    with torch.no_grad():
        assert np.abs(avx2(*inputs).numpy() - model(*inputs).numpy()).max() < INT8_VS_EAGER
    graph = recc.api.capture(model, examples)
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", "avx2")))
    np.testing.assert_allclose(avx2(*inputs).numpy(), interpret(graph, [t.numpy() for t in inputs])[0],
                               atol=KERNEL_ATOL)
    # Nehalem (SSE4.2): no int8 kernel: the layers stay fp32, and the report says why
    sse = recc.compile(model, examples, target=TargetSpec("cpu", "nehalem", 2), tuning_db=None, precision="int8")
    assert sse.report["precision"]["layers"] == {}
    rejects = next(p["rejects"] for p in sse.report["passes"] if p["name"] == "quantize-dense")
    assert any("no int8 kernel" in reason for reason in rejects)
    with torch.no_grad():
        assert np.abs(sse(*inputs).numpy() - model(*inputs).numpy()).max() < 1e-5


BF16_ATOL = 1e-4  # the AMX-BF16 kernel (fp32 accumulation in tile order) vs numpy's (float64) sum of bf16 products


@pytest.mark.parametrize("m,k,n", [(1, 64, 1), (37, 13, 50), (70, 200, 96), (256, 1024, 33)])
def test_bf16_kernel_matches_the_bf16_semantics(m: int, k: int, n: int) -> None:
    import tvm

    from recc.compiler.codegen.tvm.kernels.cpu import dense_bf16
    from recc.compiler.quantize import dense_bf16 as bf16_reference

    if not TARGET.has("amx-tile", "amx-bf16"):
        pytest.skip("this CPU lacks AMX-BF16")
    assert request_amx()
    rng = np.random.default_rng(m + k + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    if m > 2:
        x[1, 0], x[2, k - 1] = np.nan, -np.inf
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    dev = tvm.cpu()
    y = tvm.runtime.tensor(np.full((m, n), -7.0, np.float32), dev)
    bias = np.zeros(d8.padded_n(n), np.float32)
    bias[:n] = b
    _build(dense_bf16.dense_amx_bf16(k, n, "none"))(
        *[tvm.runtime.tensor(a, dev) for a in (x, dense_bf16.pack_bf16(w), bias, d8.tile_config())], y,
        tvm.runtime.tensor(np.zeros(((m + 31) // 32 * 32, dense_bf16.row_stride(k)), np.uint16), dev))
    want, got = bf16_reference(x, w, b), y.numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=BF16_ATOL, rtol=1e-5)


def test_bf16_model_matches_eager_within_bound() -> None:
    if not TARGET.has("amx-tile", "amx-bf16"):
        pytest.skip("this CPU lacks AMX-BF16")
    model = create("mt-wnd", scale=0.01, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None, precision="bf16")
    assert compiled.report["kernels"].get("dense_bf16_amx", 0) >= 4
    assert compiled.report["precision"]["accuracy"]["max_abs"] < 5e-3  # the bf16 bound
    for batch in (1, 33, 256):
        inputs = model.example_inputs(batch, seed=batch)
        with torch.no_grad():
            eager = model(*inputs)
        got = compiled(*inputs)
        pairs = zip(got, eager, strict=True) if isinstance(eager, (list, tuple)) else [(got, eager)]
        for g, e in pairs:
            assert np.abs(g.numpy() - e.numpy()).max() < 5e-3


def test_int8_rowwise_tables_match_their_semantics_and_shrink() -> None:
    if int8_kernel(TARGET) is None:
        pytest.skip("this CPU has no int8 dot product")
    model = create("dlrm-rmc2", scale=0.01, seed=0)  # tables of dim 64: 256 -> 68 bytes a row (3.76x)
    examples = model.example_inputs(4, seed=0)
    both = recc.compile(model, examples, tuning_db=None, precision="int8")
    dense_only = recc.compile(model, examples, tuning_db=None, precision="int8", keep_fp32=["tables"])
    rewrites = next(p["rewrites"] for p in both.report["passes"] if p["name"] == "quantize-dense")
    assert rewrites.get("tables-to-int8-rowwise") == 1
    def nbytes(w) -> int:
        return int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize

    table_bytes = sum(nbytes(w) for w in both.manifest.weights if w.name.endswith("__int8rows"))
    fp32_tables = max(nbytes(w) for w in dense_only.manifest.weights)  # the flat fp32 tables
    assert table_bytes and fp32_tables / table_bytes > 3.5, (fp32_tables, table_bytes)
    graph = recc.api.capture(model, examples)
    recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", int8_kernel(TARGET))))
    for batch in (1, 40):
        inputs = model.example_inputs(batch, seed=batch)
        want = interpret(graph, [t.numpy() for t in inputs])[0]
        np.testing.assert_allclose(both(*inputs).numpy(), want, atol=KERNEL_ATOL)
        with torch.no_grad():
            assert np.abs(both(*inputs).numpy() - model(*inputs).numpy()).max() < INT8_VS_EAGER


def test_bf16_without_amx_keeps_bf16_semantics_on_the_fp32_kernel() -> None:
    from recc.compiler.codegen.tvm.target import TargetSpec

    model = create("wnd", scale=0.01, seed=0)
    examples = model.example_inputs(4, seed=0)
    haswell = recc.compile(model, examples, target=TargetSpec("cpu", "haswell", 2), tuning_db=None, precision="bf16")
    assert haswell.report["kernels"].get("dense_bf16_storage") == 5 and "dense_bf16_amx" not in haswell.report["kernels"]
    # the tables in bf16 too: half the bytes, the rows widened inside the gather
    tables = [w for w in haswell.manifest.weights if w.name.endswith("__bf16rows")]
    assert len(tables) == 1 and tables[0].dtype == "uint16"
    rewrites = next(p["rewrites"] for p in haswell.report["passes"] if p["name"] == "quantize-dense")
    assert rewrites.get("tables-to-bf16") == 1
    graph = recc.api.capture(model, examples)
    recc.api.optimize(graph, options=(("precision", "bf16"), ("bf16_kernel", "storage")))
    assert [n.attrs.get("table_precision") for n in graph.nodes if n.op == "batched_embedding_bag"] == ["bf16"]
    for batch in (1, 45):
        inputs = model.example_inputs(batch, seed=batch)
        want = interpret(graph, [t.numpy() for t in inputs])[0]
        np.testing.assert_allclose(haswell(*inputs).numpy(), want, atol=BF16_ATOL)
        with torch.no_grad():
            assert np.abs(haswell(*inputs).numpy() - model(*inputs).numpy()).max() < 5e-3  # the bf16 bound
