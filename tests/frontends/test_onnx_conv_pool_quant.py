"""ONNX Conv / ConvTranspose (asymmetric pads, auto_pad, output_shape, groups, dilations), pooling (MaxPool
with Indices, AveragePool, LpPool, global pools), LRN, Upsample and the quantization ops (QuantizeLinear /
DequantizeLinear per tensor and per axis, DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearConv with
per-channel weight scales) imported, interpreted and compiled, equal to ONNX Runtime on seeded random inputs
(integer outputs exactly; float outputs to rtol 1e-4 / atol 1e-5)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from recc.compiler.interpreter import interpret
from recc.frontends.onnx import import_onnx

F, U8, I8 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8
RNG = np.random.default_rng(7)


def _model(nodes: list[Any], inputs: list[tuple[str, int, list[int]]], outputs: list[tuple[str, int]],
           inits: dict[str, np.ndarray], opset: int = 13) -> onnx.ModelProto:
    """The model, its outputs' shapes filled in by ONNX's shape inference."""
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs], [],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(inferred[n] for n, _ in outputs)
    return model


def _conv_pads() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2],
                            group=2)
    inits = {"w": RNG.standard_normal((4, 2, 3, 2)).astype(np.float32), "b": RNG.standard_normal(4).astype(np.float32)}
    x = RNG.standard_normal((2, 4, 7, 6)).astype(np.float32)
    return _model([node], [("x", F, [2, 4, 7, 6])], [("y", F)], inits), [x]


def _conv_same_lower() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2])
    inits = {"w": RNG.standard_normal((3, 2, 4)).astype(np.float32)}
    return _model([node], [("x", F, [1, 2, 9])], [("y", F)], inits), [RNG.standard_normal((1, 2, 9)).astype(np.float32)]


def _quant_roundtrip() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], axis=1)]
    inits = {"s": np.array([0.02, 0.05, 0.1], np.float32), "zp": np.array([-3, 0, 7], np.int8)}
    x = (RNG.standard_normal((4, 3, 5)) * 4).astype(np.float32)
    x[0, 0, :3] = [0.01, 0.03, -0.05]  # exact halves: round half to even
    x[1, 1, :3] = [np.nan, np.inf, -np.inf]  # saturate as ONNX Runtime: NaN to the low end, inf to the ends
    return _model(nodes, [("x", F, [4, 3, 5])], [("q", I8), ("y", F)], inits), [x]


def _dynamic_quant(x: np.ndarray | None = None) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "zp"])
    x = (RNG.standard_normal((3, 8)) * 3 + 1).astype(np.float32) if x is None else x
    return _model([node], [("x", F, [3, 8])], [("y", U8), ("s", F), ("zp", U8)], {}), [x]


def _dynamic_quant_nan() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    x = (RNG.standard_normal((3, 8)) * 3 + 1).astype(np.float32)
    x[1, 2] = np.nan  # ignored by the range; quantized to 0
    return _dynamic_quant(x)


def _matmul_integer() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("MatMulInteger", ["a", "b", "azp", "bzp"], ["y"])
    inits = {"b": RNG.integers(-128, 128, (6, 4)).astype(np.int8), "azp": np.array(3, np.uint8),
             "bzp": np.array([1, -2, 0, 5], np.int8)}
    return (_model([node], [("a", U8, [2, 5, 6])], [("y", TensorProto.INT32)], inits),
            [RNG.integers(0, 256, (2, 5, 6)).astype(np.uint8)])


def _qlinear_conv() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("QLinearConv", ["x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "b"], ["y"],
                            pads=[1, 1, 1, 1])
    inits = {"xs": np.array(0.05, np.float32), "xzp": np.array(120, np.uint8),
             "w": RNG.integers(-100, 100, (3, 2, 3, 3)).astype(np.int8),
             "ws": np.array([0.01, 0.02, 0.005], np.float32),
             "wzp": np.zeros(3, np.int8), "ys": np.array(0.3, np.float32), "yzp": np.array(128, np.uint8),
             "b": RNG.integers(-500, 500, 3).astype(np.int32)}
    return (_model([node], [("x", U8, [1, 2, 5, 4])], [("y", U8)], inits),
            [RNG.integers(0, 256, (1, 2, 5, 4)).astype(np.uint8)])


def _conv_integer() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    node = helper.make_node("ConvInteger", ["x", "w", "xzp"], ["y"], strides=[2, 2], pads=[0, 1, 1, 0])
    inits = {"w": RNG.integers(0, 256, (2, 1, 2, 2)).astype(np.uint8), "xzp": np.array(9, np.uint8)}
    return (_model([node], [("x", U8, [1, 1, 5, 5])], [("y", TensorProto.INT32)], inits),
            [RNG.integers(0, 256, (1, 1, 5, 5)).astype(np.uint8)])


def _x(*shape: int) -> list[np.ndarray]:
    return [RNG.standard_normal(shape).astype(np.float32)]


def _one(op: str, shape: list[int], opset: int = 13, inits: dict[str, np.ndarray] | None = None,
         extra_outputs: tuple[tuple[str, int], ...] = (), **attrs: Any) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """A one-node model over x [shape] (plus initializers named after the node's other inputs)."""
    inits = inits or {}
    node = helper.make_node(op, ["x", *inits], ["y", *(n for n, _ in extra_outputs)], **attrs)
    return _model([node], [("x", F, shape)], [("y", F), *extra_outputs], inits, opset), _x(*shape)


WINDOW_CASES: dict[str, Callable[[], tuple[onnx.ModelProto, list[np.ndarray]]]] = {
    "maxpool_indices": lambda: _one("MaxPool", [2, 3, 7, 6], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                    extra_outputs=(("i", TensorProto.INT64),)),
    "maxpool_asymmetric_pads_dilation": lambda: _one("MaxPool", [1, 2, 9, 8], kernel_shape=[3, 3], pads=[0, 1, 2, 0],
                                                     dilations=[2, 1], opset=12),
    "avgpool_asymmetric_pads_exclude_pad": lambda: _one("AveragePool", [1, 2, 6, 7], kernel_shape=[3, 2],
                                                        pads=[1, 0, 0, 1], strides=[2, 1]),
    "maxpool_asymmetric_pads_ceil": lambda: _one("MaxPool", [1, 2, 8, 7], kernel_shape=[3, 2], strides=[2, 2],
                                                 pads=[0, 1, 1, 0], ceil_mode=1),
    "avgpool_asymmetric_pads_ceil_exclude_pad": lambda: _one("AveragePool", [1, 2, 8, 7], kernel_shape=[3, 2],
                                                             strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1),
    # ceil_mode where torch's rule keeps a last window that ONNX's drops (it starts in the right padding)
    "maxpool_asymmetric_pads_ceil_last_window_dropped": lambda: _one("MaxPool", [1, 1, 4, 4], kernel_shape=[2, 2],
                                                                     strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1),
    "avgpool_ceil_include_pad": lambda: _one("AveragePool", [1, 1, 7, 7], kernel_shape=[3, 3], strides=[2, 2],
                                             pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    "lppool_p3": lambda: _one("LpPool", [1, 2, 5, 6], kernel_shape=[2, 2], p=3, pads=[0, 1, 0, 1]),
    "global_average_pool": lambda: _one("GlobalAveragePool", [2, 3, 4, 5]),
    "global_max_pool": lambda: _one("GlobalMaxPool", [2, 3, 4]),
    "lrn": lambda: _one("LRN", [2, 5, 3, 3], size=3, alpha=0.01, beta=0.6, bias=2.0),
    "convtranspose_output_shape_groups": lambda: _one(
        "ConvTranspose", [1, 4, 3, 4], inits={"w": RNG.standard_normal((4, 1, 3, 3)).astype(np.float32),
                                              "b": RNG.standard_normal(2).astype(np.float32)},
        strides=[2, 2], group=2, output_shape=[8, 9]),
    "convtranspose_pads_output_padding": lambda: _one(
        "ConvTranspose", [1, 2, 4], inits={"w": RNG.standard_normal((2, 3, 3)).astype(np.float32)},
        strides=[3], pads=[1, 2], output_padding=[2], dilations=[2]),
    "upsample_nearest_opset9": lambda: _one("Upsample", [1, 1, 2, 3], opset=9,
                                            inits={"s": np.array([1, 1, 2, 1.5], np.float32)}),
}


CASES: dict[str, Callable[[], tuple[onnx.ModelProto, list[np.ndarray]]]] = {
    **WINDOW_CASES,
    "conv_asymmetric_pads_groups_dilations": _conv_pads, "conv_same_lower": _conv_same_lower,
    "quantize_dequantize_per_axis": _quant_roundtrip, "dynamic_quantize": _dynamic_quant,
    "dynamic_quantize_with_nan": _dynamic_quant_nan,
    "dynamic_quantize_all_zero": lambda: _dynamic_quant(np.zeros((3, 8), np.float32)),
    "matmul_integer_per_column_zero_point": _matmul_integer, "qlinear_conv_per_channel": _qlinear_conv,
    "conv_integer": _conv_integer,
}


def _check(outs: list[Any], want: list[np.ndarray]) -> None:
    assert len(outs) == len(want)
    for o, w in zip(outs, want):
        o = np.asarray(o)
        assert o.dtype == w.dtype and o.shape == w.shape, (o.dtype, o.shape, w.dtype, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(o, w)


def _reference(model: onnx.ModelProto, xs: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_onnxruntime(name: str) -> None:
    model, xs = CASES[name]()
    _check(interpret(import_onnx(model), xs), _reference(model, xs))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_onnxruntime(name: str) -> None:
    import recc

    model, xs = CASES[name]()
    got = recc.compile(model)(*xs)
    _check(list(got) if isinstance(got, (tuple, list)) else [got], _reference(model, xs))
