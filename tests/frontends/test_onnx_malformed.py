"""Malformed ONNX files the fuzzer (tests/fuzz/test_onnx_fuzz.py) found escaping as other exception types
(UnicodeDecodeError, numpy's ValueError/KeyError, IndexError, TypeError): each must be an OnnxImportError
that names the problem."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from recc.compiler.ir import Graph, TensorType, sym
from recc.frontends.onnx import OnnxImportError, UnsupportedOpError, import_onnx
from recc.frontends.onnx.context import Ctx
from recc.frontends.onnx.importer import convert_nodes


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto] = (),
           elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem_type, ["batch", 4])
    y = helper.make_tensor_value_info("y", elem_type, ["batch", 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


RELU = helper.make_node("Relu", ["x"], ["y"], name="relu")


def test_a_failing_check_that_names_a_non_utf8_input_is_refused() -> None:
    """onnx.checker's message quotes the name, and decoding the message raised UnicodeDecodeError."""
    node = helper.make_node("Add", ["x", "nope"], ["y"], name="add")
    data = _model([node]).SerializeToString().replace(b"nope", b"n\xf5pe")
    with pytest.raises(OnnxImportError, match="onnx.checker"):
        import_onnx(data)


@pytest.mark.parametrize("edit", ["long", "dims", "dtype"])
def test_an_initializer_that_cannot_be_read_is_named(edit: str) -> None:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], np.ones(4, np.float32).tobytes(), raw=True)
    if edit == "long":  # (too short is onnx.checker's to refuse)
        w.raw_data += b"\0" * 4
    elif edit == "dims":
        w.dims[0] = 3
    else:
        w.data_type = 99
    model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [w])
    # wrong dims or an unknown type: ONNX's inference (run first) names the problem; extra bytes: recc
    expected = "initializer 'w' cannot be read" if edit == "long" else "type and shape inference"
    with pytest.raises(OnnxImportError, match=expected):
        import_onnx(model.SerializeToString())


def test_an_input_of_an_element_type_recc_lacks_is_refused() -> None:
    with pytest.raises(OnnxImportError, match="input 'x'"):
        import_onnx(_model([helper.make_node("Identity", ["x"], ["y"])], elem_type=TensorProto.COMPLEX64))


@pytest.mark.parametrize("fold", ["gather past the shape", "cast of a symbolic shape to float"])
def test_shape_arithmetic_on_an_inconsistent_model_is_refused_by_node(fold: str) -> None:
    shape = helper.make_node("Shape", ["x"], ["s"])
    if fold == "gather past the shape":
        index = helper.make_tensor("i", TensorProto.INT64, [], [5])
        bad, inits = helper.make_node("Gather", ["s", "i"], ["t"], name="bad"), [index]
    else:
        bad, inits = helper.make_node("Cast", ["s"], ["t"], to=TensorProto.FLOAT, name="bad"), []
    with pytest.raises(UnsupportedOpError, match="node 'bad'"):
        import_onnx(_model([shape, bad, RELU], inits))


@pytest.mark.parametrize("op", ["MatMul", "Add"])
def test_operands_of_different_types_are_refused(op: str) -> None:
    """A float32 weight retyped to int32 (its bytes unchanged): ONNX Runtime refuses the model; recc cast
    the weight and computed another function, or failed in the TVM build (found by the ONNX fuzzer). The
    weight is big enough (> 64 KiB) that its bytes are set aside during the check."""
    w = helper.make_tensor("w", TensorProto.INT32, [4, 4096] if op == "MatMul" else [4],
                           np.ones(4 * (4096 if op == "MatMul" else 1), np.int32).tobytes(), raw=True)
    y = helper.make_node(op, ["x", "w"], ["y"], name="bad")
    model = _model([y], [w])
    if op == "MatMul":
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4096
    with pytest.raises(OnnxImportError, match=f"{op} node 'bad': the model fails ONNX type and shape inference"):
        import_onnx(model)  # the node ONNX's error points at is named
    assert model.graph.initializer[0].raw_data == w.raw_data  # the caller's model is left as it was


def _axis_node(op: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """`op` over x [batch, 4] along axis 2: one past the last (ONNX Runtime refuses it at run time)."""
    if op == "Softmax":
        return [helper.make_node("Softmax", ["x"], ["y"], axis=2, name="bad")], []
    if op == "Concat":
        return [helper.make_node("Concat", ["x", "x"], ["c"], axis=2, name="bad"),
                helper.make_node("Identity", ["x"], ["y"])], []
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    starts = helper.make_tensor("s", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("e", TensorProto.INT64, [1], [1])
    return [helper.make_node("Slice", ["x", "s", "e", "axes"], ["t"], name="bad"),
            helper.make_node("Identity", ["x"], ["y"])], [axes, starts, ends]


@pytest.mark.parametrize("op", ["Softmax", "Concat", "Slice"])
def test_an_axis_out_of_range_is_refused_not_wrapped(op: str) -> None:
    """recc took axis % rank: a Softmax over axis 2 of a rank-2 tensor ran over axis 0, the batch (the
    ONNX fuzzer found it by editing DIN's Softmax axis, where ONNX's inference did not know the rank).
    ONNX's inference refuses these small models first; the converters are called directly too."""
    nodes, inits = _axis_node(op)
    with pytest.raises(OnnxImportError, match="type and shape inference"):
        import_onnx(_model(nodes, inits))
    ctx = Ctx(Graph("g"), 17)
    ctx.env["x"] = ctx.graph.add_input("x", TensorType((sym("batch"), 4), "float32"))
    ctx.env.update({t.name: numpy_helper.to_array(t) for t in inits})
    with pytest.raises(UnsupportedOpError, match="node 'bad': axis 2 is out of range for a rank-2 input"):
        convert_nodes(ctx, nodes)
