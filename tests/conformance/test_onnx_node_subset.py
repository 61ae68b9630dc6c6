"""The CI tier of the ONNX node-test conformance run (bench/conformance/onnx_node.py): a fixed subset of
ONNX's own node test cases, across op families, that recc passes today; any regression fails. Plus checks
that the harness can fail: a wrong answer is classified wrong, and a refusal names the node and its op."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "conformance"))

import onnx_cases  # noqa: E402
import onnx_node  # noqa: E402

pytestmark = pytest.mark.slow

SUBSET = (
    # elementwise arithmetic, broadcasting, comparisons, logic
    "test_add_bcast", "test_sub_example", "test_mul_uint8", "test_div_bcast", "test_pow_bcast_array",
    "test_max_example", "test_mean_example", "test_greater_equal_bcast", "test_and_bcast4v3d", "test_where_example",
    "test_div_int32_trunc", "test_bitwise_xor_i32_2d", "test_pow_types_int64_int64",
    # scatters (indices range-checked; negative ones wrap)
    "test_scatter_elements_with_negative_indices", "test_scatter_elements_with_reduction_max", "test_scatternd_add",
    # unary math and activations
    "test_abs", "test_sqrt_example", "test_floor", "test_sign", "test_isinf_negative", "test_leakyrelu_example",
    "test_clip_default_int8_min", "test_prelu_broadcast",
    # reductions, arg, cumulative
    "test_reduce_sum_keepdims_random", "test_argmin_default_axis_random_select_last_index", "test_reduce_l2_do_not_keepdims_example",
    "test_argmax_negative_axis_keepdims_random_select_last_index", "test_cumsum_1d_reverse_exclusive",
    # shapes and data movement
    "test_split_2d_uneven_split_opset18", "test_expand_dim_changed", "test_slice_negative_axes",
    "test_concat_3d_axis_negative_1", "test_gather_elements_negative_indices", "test_tile", "test_center_crop_pad_crop",
    "test_tril_neg", "test_selu_example_expanded_ver18",
    # matmul, normalization, softmax family, losses, resize
    "test_gemm_all_attributes", "test_matmul_4d", "test_layer_normalization_4d_axis_negative_2_expanded",
    "test_batchnorm_epsilon", "test_softmax_axis_0_expanded", "test_hardmax_axis_1",
    "test_sce_NCd1d2d3_sum_weight_high_ii_log_prob", "test_resize_upsample_scales_cubic_align_corners",
    # quantized ops, windows, N-d gathers, 16/32-bit unsigned integers
    "test_qlinearmatmul_3D_int8_float32", "test_dynamicquantizelinear_min_adjusted", "test_convinteger_with_padding",
    "test_qlinearconv", "test_lrn", "test_upsample_nearest", "test_gathernd_example_int32_batch_dim1",
    "test_add_uint16", "test_mul_int16",
)


@pytest.fixture(scope="module")
def cases() -> dict:
    return onnx_cases.load_cases(set(SUBSET) | {"test_relu", "test_stft"})


@pytest.mark.parametrize("name", SUBSET)
def test_node_case_passes(cases: dict, name: str) -> None:
    case = cases[name]
    assert onnx_cases.exclusion(name, case.model) is None
    result = onnx_node.run_case(case, timeout_s=60, with_ort=False)
    assert result["status"] == "passed", result


class _OffByOne:
    """A backend that answers relu(x) + 1e-3: ONNX's comparison must call it wrong."""

    def __init__(self, model: object) -> None:
        pass

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.maximum(inputs[0], 0) + np.float32(1e-3)]


def test_the_harness_detects_a_wrong_answer(cases: dict) -> None:
    result = onnx_cases.run_with(_OffByOne, cases["test_relu"], timeout_s=60)
    assert result["status"] == "wrong", result
    assert "Mismatched elements" in result["reason"] or "tolerance" in result["reason"]


def test_a_refusal_names_the_node_and_its_op(cases: dict) -> None:
    case = cases["test_stft"]  # STFT: no IR op for a Fourier transform
    result = onnx_node.run_case(case, timeout_s=60, with_ort=False)
    assert result["status"] == "refused", result
    node = case.model.graph.node[0]
    assert f"STFT node {node.name or node.output[0]!r}" in result["reason"]
