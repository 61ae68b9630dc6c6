"""Ways to damage an ONNX model, for the ONNX fuzzer (tests/fuzz/test_onnx_fuzz.py).

Byte damage to the serialized file (bit flips, truncation, inserted garbage) and structured edits of the
protobuf: wrong input dims or dtypes, a node input nobody produces, unknown or swapped op types, wrong
attributes, initializers of the wrong size or dtype, a cycle, a node dropped, an empty graph, an output
nobody produces, another opset. `mutate(data, model, draw)` returns (kind, the damaged bytes).
"""

from __future__ import annotations

from typing import Any, Callable

import onnx
from hypothesis import strategies as st
from onnx import TensorProto

BYTE_KINDS = ("flip", "flips", "truncate", "insert")
EDIT_KINDS = ("input-dim", "input-rank", "input-dtype", "dangling-input", "unknown-op", "swap-op", "attribute",
              "initializer-size", "initializer-dtype", "initializer-dims", "cycle", "drop-node", "empty-graph",
              "no-output", "opset", "duplicate-output")
KINDS = BYTE_KINDS + EDIT_KINDS
SWAPS = {"Relu": "Sigmoid", "Sigmoid": "Tanh", "Add": "Mul", "Mul": "Sub", "Gemm": "MatMul", "MatMul": "Add",
         "Concat": "Sum", "Gather": "GatherElements", "ReduceSum": "ReduceMean", "Reshape": "Expand",
         "Unsqueeze": "Squeeze", "Transpose": "Identity", "Sub": "Div"}
DTYPES = (TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL,
          TensorProto.STRING, TensorProto.UINT8, TensorProto.BFLOAT16, TensorProto.COMPLEX64, 0, 99)


def _bytes(data: bytes, kind: str, draw: Any) -> bytes:
    raw = bytearray(data)
    if kind in ("flip", "flips"):
        for _ in range(1 if kind == "flip" else draw(st.integers(2, 16))):
            raw[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(raw)
    if kind == "truncate":
        return bytes(raw[:draw(st.integers(0, len(raw) - 1))])
    at = draw(st.integers(0, len(raw)))
    return bytes(raw[:at]) + draw(st.binary(min_size=1, max_size=16)) + bytes(raw[at:])


def _pick(draw: Any, items: Any) -> Any:
    return items[draw(st.integers(0, len(items) - 1))] if len(items) else None


def _inputs(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in initializers]


def _input_dim(m: onnx.ModelProto, draw: Any) -> None:
    dims = [d for i in _inputs(m) for d in i.type.tensor_type.shape.dim]
    d = _pick(draw, dims)
    if d is not None:
        choice = draw(st.sampled_from(["value", "param", "clear", "negative"]))
        if choice == "value":
            d.dim_value = draw(st.integers(0, 100))
        elif choice == "param":
            d.dim_param = draw(st.sampled_from(["batch", "other", "", "N"]))
        elif choice == "negative":
            d.dim_value = -draw(st.integers(1, 3))
        else:
            d.Clear()


def _input_rank(m: onnx.ModelProto, draw: Any) -> None:
    vi = _pick(draw, _inputs(m))
    if vi is not None:
        shape = vi.type.tensor_type.shape
        if draw(st.booleans()) and len(shape.dim):
            del shape.dim[-1]
        else:
            shape.dim.add().dim_value = draw(st.integers(1, 4))


def _node_input(m: onnx.ModelProto, draw: Any, name: Callable[[int], str]) -> None:
    node = _pick(draw, [n for n in m.graph.node if len(n.input)])
    if node is not None:
        k = draw(st.integers(0, len(node.input) - 1))
        node.input[k] = name(list(m.graph.node).index(node))


def _later_output(m: onnx.ModelProto, index: int) -> str:
    """An output of the last node: using it at `index` or earlier makes a cycle (or a use before definition)."""
    return m.graph.node[-1].output[0] if index < len(m.graph.node) else "x"


def _attribute(m: onnx.ModelProto, draw: Any) -> None:
    attrs = [a for n in m.graph.node for a in n.attribute if a.type in (onnx.AttributeProto.INT,
                                                                        onnx.AttributeProto.INTS,
                                                                        onnx.AttributeProto.FLOAT)]
    a = _pick(draw, attrs)
    if a is not None:
        value = draw(st.integers(-4, 4))
        if a.type == onnx.AttributeProto.INT:
            a.i = value
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = draw(st.sampled_from([0.0, -1.0, float("nan"), 1e30]))
        elif len(a.ints):
            a.ints[draw(st.integers(0, len(a.ints) - 1))] = value


def _initializer(m: onnx.ModelProto, kind: str, draw: Any) -> None:
    t = _pick(draw, list(m.graph.initializer))
    if t is None:
        return
    if kind == "initializer-size":
        if t.raw_data:
            t.raw_data = t.raw_data[:draw(st.integers(0, max(0, len(t.raw_data) - 1)))]
        else:
            t.dims.append(2)
    elif kind == "initializer-dtype":
        t.data_type = draw(st.sampled_from(DTYPES))
    elif len(t.dims) and draw(st.booleans()):
        t.dims[draw(st.integers(0, len(t.dims) - 1))] += draw(st.sampled_from([-1, 1, 7]))
    else:
        t.dims.insert(0, 1)


def _edit(m: onnx.ModelProto, kind: str, draw: Any) -> None:
    g = m.graph
    if kind == "input-dim":
        _input_dim(m, draw)
    elif kind == "input-rank":
        _input_rank(m, draw)
    elif kind == "input-dtype":
        vi = _pick(draw, _inputs(m))
        if vi is not None:
            vi.type.tensor_type.elem_type = draw(st.sampled_from(DTYPES))
    elif kind == "dangling-input":
        _node_input(m, draw, lambda i: "never_defined")
    elif kind == "cycle":
        _node_input(m, draw, lambda i: _later_output(m, i))
    elif kind in ("unknown-op", "swap-op"):
        node = _pick(draw, list(g.node))
        if node is not None:
            node.op_type = "FuzzUnknownOp" if kind == "unknown-op" else SWAPS.get(node.op_type, "Identity")
    elif kind == "attribute":
        _attribute(m, draw)
    elif kind.startswith("initializer"):
        _initializer(m, kind, draw)
    elif kind == "drop-node" and len(g.node):
        del g.node[draw(st.integers(0, len(g.node) - 1))]
    elif kind == "empty-graph":
        del g.node[:]
        if draw(st.booleans()):
            del g.initializer[:]
    elif kind == "no-output" and len(g.output):
        g.output[0].name = "produced_by_nobody"
    elif kind == "duplicate-output" and len(g.output):
        g.output.add().CopyFrom(g.output[0])
    elif kind == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 7, 11, 13, 21, 99]))


def mutate(data: bytes, model: onnx.ModelProto, draw: Any) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    if kind in BYTE_KINDS:
        return kind, _bytes(data, kind, draw)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _edit(m, kind, draw)
    return kind, m.SerializeToString()
