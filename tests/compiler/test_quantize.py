"""The reduced-precision semantics (recc/compiler/quantize.py) and the accuracy tools, in numpy alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recc.compiler.accuracy import PrecisionConfig, errors, synthetic_inputs
from recc.compiler.quantize import (
    dense_bf16,
    dense_int8,
    from_bf16,
    quantize_rows_u8,
    quantize_weight_int8,
    range_params,
    to_bf16,
)


def test_weights_quantize_per_channel_symmetrically(rng) -> None:
    w = rng.standard_normal((8, 40)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)[:, None]
    wq, scale = quantize_weight_int8(w)
    assert wq.dtype == np.int8 and np.abs(wq).max() == 127
    assert np.all(np.abs(wq.astype(np.float32) * scale[:, None] - w) <= scale[:, None] / 2 + 1e-7)
    _, zero_scale = quantize_weight_int8(np.zeros((2, 5), np.float32))
    assert np.all(zero_scale == 1)  # an all-zero channel: no division by zero


def test_rows_quantize_with_zero_exact_and_range_kept(rng) -> None:
    x = rng.standard_normal((6, 33)).astype(np.float32)
    x[0] = np.abs(x[0])  # all positive: the range still includes 0
    x[2, 5] = 0
    xq, scale, zp = quantize_rows_u8(x)
    back = (xq.astype(np.float32) - zp[:, None]) * scale[:, None]
    assert np.all(np.abs(back - x) <= scale[:, None] / 2 + 1e-6)
    assert back[2, 5] == 0 and zp[0] == 0


def test_non_finite_rows_give_nan_scale(rng) -> None:
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x[0, 1], x[2, 7] = np.nan, -np.inf
    _, scale, _ = quantize_rows_u8(x)
    assert np.isnan(scale[0]) and np.isfinite(scale[1]) and np.isnan(scale[2])
    out = dense_int8(x, rng.standard_normal((4, 8)).astype(np.float32), None)
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[1]).all()


@pytest.mark.parametrize("k", [16, 256, 1024])
def test_int8_dense_error_is_bounded_relative_to_fp32(rng, k: int) -> None:
    x = rng.standard_normal((64, k)).astype(np.float32)
    w = (rng.standard_normal((32, k)) / np.sqrt(k)).astype(np.float32)
    exact = x @ w.T
    err = np.abs(dense_int8(x, w, None) - exact).max()
    # per-row activation steps (range / 255) and per-channel weight steps (max / 127): ~1% of the output scale
    assert err < 0.02 * np.abs(exact).max(), err


def test_bf16_rounds_to_nearest_even_and_keeps_nan() -> None:
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, np.nan, 3.0e38], np.float32)
    back = from_bf16(to_bf16(x))
    assert back[0] == 1.0 and back[1] == 1.0  # a tie rounds to even
    assert back[2] == np.float32(1.015625) and back[3] == -2.5 and back[4] == np.inf and np.isnan(back[5])
    assert np.isfinite(back[6])


def test_bf16_dense_is_close_to_fp32(rng) -> None:
    x = rng.standard_normal((16, 128)).astype(np.float32)
    w = (rng.standard_normal((8, 128)) / 11).astype(np.float32)
    assert np.abs(dense_bf16(x, w, None) - x @ w.T).max() < 2e-2


def test_errors_measure_difference_and_ranking() -> None:
    ref = [np.arange(20, dtype=np.float32)[:, None]]
    same = errors(ref, ref, query=20)
    assert same["max_abs"] == 0 and same["top_k_agreement"] == 1.0
    flipped = errors(ref, [-ref[0]], query=20)
    assert flipped["top_k_agreement"] == 0.0 and flipped["max_abs"] == 38


def test_synthetic_inputs_follow_the_examples(rng) -> None:
    dense = (rng.standard_normal((8, 3)) * [1, 10, 100] + [0, 5, -50]).astype(np.float32)
    ids = rng.integers(0, 7, (8, 4))
    out = synthetic_inputs([dense, ids], 500, seed=3)
    assert out[0].shape == (500, 3) and out[0].dtype == np.float32 and out[1].shape == (500, 4)
    assert set(np.unique(out[1])) <= set(np.unique(ids))
    assert abs(out[0][:, 2].mean() - dense[:, 2].mean()) < 0.2 * dense[:, 2].std() + 1


def test_precision_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="precision must be"):
        PrecisionConfig("int4")
    with pytest.raises(ValueError, match="max_error"):
        PrecisionConfig("int8", max_error=0)
    with pytest.raises(ValueError, match="calibrate quantizes int8 activations statically: it needs precision"):
        PrecisionConfig("bf16", calibrate=8)
    with pytest.raises(ValueError, match="calibrate must be a positive number of rows"):
        PrecisionConfig("auto", calibrate=0)
    assert PrecisionConfig("auto", calibrate=np.int64(8)).calibrate == 8


def test_static_semantics_clamp_and_keep_nan_rows(rng) -> None:
    x = np.array([[0.0, 1.0, -1.0, 2.0], [10.0, -10.0, 0.5, 0.0], [np.nan, 0, 0, 0]], np.float32)
    scale, _, zp = range_params(np.float32(-1), np.float32(2))  # calibrated on [-1, 2]
    xq, xs, zero = quantize_rows_u8(x, (float(scale), float(zp)))
    assert zero[0] == 85 and xq[0, 0] == 85 and xq[0, 2] == 0 and xq[0, 3] == 255
    assert xq[1, 0] == 255 and xq[1, 1] == 0  # clamped: outside [-1, 2]
    assert np.isfinite(xs[:2]).all() and np.isnan(xs[2])
    out = dense_int8(x, rng.standard_normal((3, 4)).astype(np.float32), None, (float(scale), float(zp)))
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()


def test_rowwise_tables_pack_in_fbgemm_tbe_layout(rng) -> None:
    from recc.compiler.quantize import dequantize_rowwise, pack_rowwise_int8, rowwise_row_bytes

    table = rng.standard_normal((6, 6)).astype(np.float32)
    table[3] = 0.25  # a constant row: scale 1, every value exact
    table[4] = 1.0 + np.arange(6, dtype=np.float32) * 1e-9  # a span whose scale underflows fp16: scale 1
    packed = pack_rowwise_int8(table).reshape(6, rowwise_row_bytes(6))
    assert rowwise_row_bytes(6) == 12 and rowwise_row_bytes(32) == 36 and packed.dtype == np.uint8
    scale = packed[:, 8:10].copy().view(np.float16)[:, 0].astype(np.float32)
    bias = packed[:, 10:12].copy().view(np.float16)[:, 0].astype(np.float32)
    back = packed[:, :6].astype(np.float32) * scale[:, None] + bias[:, None]
    np.testing.assert_array_equal(back, dequantize_rowwise(table))
    span = table.max(axis=1) - table.min(axis=1)
    slack = (span + np.abs(table.min(axis=1))) * 2.0 ** -10  # the fp16 rounding of scale and bias
    assert np.all(np.abs(back - table) <= (span / 255 / 2 + slack)[:, None] + 1e-7)
    assert np.all(back[3] == 0.25) and np.all(np.abs(back[4] - 1) < 1e-6) and scale[4] == 1
    assert np.all(bias == table.min(axis=1).astype(np.float16)) and np.all(packed[:, 6:8] == 0)


def test_dense_refuses_nonsense_calibrated_params() -> None:
    from recc.compiler.ir import IRTypeError, infer_types
    from recc.compiler.ir.types import TensorType

    types = [TensorType((4, 8), "float32"), TensorType((3, 8), "float32")]
    assert infer_types("dense", types, {"precision": "int8", "act_scale": 0.01, "act_zero_point": 3.0})
    for bad in ({"act_scale": 0.0, "act_zero_point": 3.0}, {"act_scale": 0.1, "act_zero_point": 300.0},
                {"act_scale": 0.1}):
        with pytest.raises(IRTypeError, match="calibrated activation scale"):
            infer_types("dense", types, {"precision": "int8", **bad})


def test_report_says_static_or_dynamic_per_layer() -> None:
    from recc.compiler.report import _precision_lines

    lines = _precision_lines({"requested": "int8", "layers": {"a": "int8", "b": "int8", "c": "int8"},
                              "activations": {"a": "static (calibrated on 64 rows)", "b": "dynamic",
                                              "c": "static (calibrated on 64 rows)"}})
    assert "  int8 activations: static (calibrated on 64 rows): a, c; dynamic: b" in lines


def test_tables_beyond_fp16_range_or_non_finite_stay_fp32() -> None:
    """The 8-bit rows keep an fp16 scale and bias: a table holding |x| > 65504 (or NaN/inf) stays fp32,
    with the reason in the pass report."""
    import recc
    from recc.models import create

    model = create("dlrm-rmc1", scale=0.001, seed=0)
    examples = model.example_inputs(4, seed=0)
    for value, reason in ((1e5, "beyond fp16's range"), (float("inf"), "NaN or inf")):
        bag = next(m for m in model.modules() if isinstance(m, torch.nn.EmbeddingBag))
        with torch.no_grad():
            bag.weight[0, 0] = value
        graph = recc.api.capture(model, examples)
        reports = recc.api.optimize(graph, options=(("precision", "int8"), ("int8_kernel", "vnni")))
        quantize = next(r for r in reports if r.name == "quantize-dense")
        assert "tables-to-int8-rowwise" not in quantize.rewrites
        assert any(reason in r for r in quantize.rejects), quantize.rejects
        assert all(n.attrs.get("table_precision", "fp32") == "fp32" for n in graph.nodes
                   if n.op == "batched_embedding_bag")


def test_auto_table_format_follows_cache_lines() -> None:
    """auto's table format: the fewest cache lines a lookup touches, bf16 on a tie, 8-bit only beyond the
    last-level cache (bench/table_formats.py measured why)."""
    from types import SimpleNamespace

    from recc.compiler.quantize import row_lines, table_lines
    from recc.passes.quantize_dense import auto_table_format

    assert row_lines(64) == 1 and row_lines(36) == 1.5 and row_lines(128) == 2 and row_lines(68) == 2
    assert table_lines([(32, 80)]) == {"fp32": 160, "bf16": 80, "int8": 120}

    def node(dim: int):
        return SimpleNamespace(attrs={"table_rows": [1000, 1000], "table_dims": [dim, dim], "bag_sizes": [20, 20],
                                      "id_cols": [0, 20]})

    mb = 1 << 20
    assert auto_table_format(node(32), 400 * mb, 32 * mb) == "bf16"  # RMC1: 64-byte bf16 rows, 1.5-line 8-bit ones
    assert auto_table_format(node(64), 400 * mb, 32 * mb) == "bf16"  # RMC2: two lines either way
    assert auto_table_format(node(128), 400 * mb, 32 * mb) == "int8"  # 132-byte rows: 3.06 lines vs 4
    assert auto_table_format(node(128), 8 * mb, 32 * mb) == "bf16"  # in cache: no 8-bit arithmetic


def test_spilled_buffers_read_in_chunks_release_their_pages(tmp_path) -> None:
    """chunked() over a spilled (read-only memory-mapped) buffer yields every element once and drops each
    chunk's pages after it (the values read back unchanged); in-memory arrays are left alone."""
    from recc.compiler.ir.spill import chunked, release_pages, stream_npy

    data = np.arange(3 * (1 << 16) + 5, dtype=np.float32)
    mapped = stream_npy(tmp_path / "flat.npy", [data[:1000], data[1000:]], np.float32, data.size)
    seen = np.concatenate([chunk.copy() for _, chunk in chunked(mapped, 1 << 16)])
    np.testing.assert_array_equal(seen, data)
    np.testing.assert_array_equal(mapped, data)  # pages dropped from the map come back from the file
    in_memory = data.copy()
    release_pages(in_memory, 0, in_memory.size)  # not a map: nothing happens
    np.testing.assert_array_equal(in_memory, data)
