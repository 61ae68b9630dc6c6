"""ONNX graph -> recc IR: inputs with a symbolic batch dim, initializers as parameters, one converter per
op type, outputs.

The batch dim: `batch_dim` names an input dim_param; else it is the dim_param (or the unknown size) of
dim 0 of the first input that has one. Every dim spelled with that name becomes the IR's `batch`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from recc.compiler.ir import Graph, TensorType, Value, VerificationError, verify
from recc.compiler.ir.types import Dim, sym
from recc.frontends.onnx import (arith, conv, dense, elementwise, embedding_bag, gathers, layout, losses,
                                 normalization, pool, quantize, recurrent, reduce, resize, scatter, shapes, sort)
from recc.frontends.onnx.context import ConversionError, Ctx, Lazy, OnnxImportError, OnnxNode, UnsupportedOpError, ir_dtype
from recc.frontends.onnx.load import read_model

Converter = Callable[[Ctx, OnnxNode], Any]
CONVERTERS: dict[str, Converter] = {
    **elementwise.CONVERTERS, **dense.CONVERTERS, **shapes.CONVERTERS, **gathers.CONVERTERS,
    **embedding_bag.CONVERTERS, **recurrent.CONVERTERS, **arith.CONVERTERS,
    **reduce.CONVERTERS, **normalization.CONVERTERS, **losses.CONVERTERS,
    **layout.CONVERTERS, **resize.CONVERTERS, **scatter.CONVERTERS, **sort.CONVERTERS, **quantize.CONVERTERS,
    **conv.CONVERTERS, **pool.CONVERTERS,
}


# ops whose converters know what a Lazy input means; any other op with a Lazy input yields a Lazy
LAZY_CONSUMERS = ("Loop", "ConcatFromSequence", "Concat")


def import_onnx(model: onnx.ModelProto | str | os.PathLike[str] | bytes, batch_dim: str | None = None,
                name: str | None = None) -> Graph:
    """Convert an ONNX model (path, bytes or ModelProto) into a verified recc IR graph."""
    return import_specialized(model, batch_dim, name)[0]


def import_specialized(model: onnx.ModelProto | str | os.PathLike[str] | bytes, batch_dim: str | None = None,
                       name: str | None = None, known_inputs: dict[str, np.ndarray] | None = None
                       ) -> tuple[Graph, set[str]]:
    """import_onnx, where a graph input in `known_inputs` (by ONNX name) that a converter needs as a
    constant (a Reshape's shape, a Slice's starts) is read as that value: the graph is specialized on it.
    The input stays an input of the graph. Returns (graph, the names of the inputs specialized on)."""
    proto = read_model(model)
    CONVERTERS.setdefault("If", _if)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = Graph(name or proto.graph.name or "onnx_model")
    ctx = Ctx(graph, opset, known_inputs)
    initializers = {t.name for t in proto.graph.initializer}
    for tensor in proto.graph.initializer:
        ctx.env[tensor.name] = _initializer(tensor)
    batch = _batch_dim_name(proto.graph, initializers, batch_dim)
    for value_info in proto.graph.input:
        if value_info.name not in initializers:
            ctx.env[value_info.name] = graph.add_input(value_info.name, _input_type(value_info, batch, proto.graph))
            ctx.onnx_input_names[ctx.env[value_info.name].name] = value_info.name
    convert_nodes(ctx, proto.graph.node)
    graph.outputs = [_output(ctx, o.name) for o in proto.graph.output]
    graph.remove_dead()
    try:
        verify(graph)
    except VerificationError as e:
        raise OnnxImportError(f"the imported graph is inconsistent: {e}") from e
    return graph, ctx.specialized


def _initializer(tensor: onnx.TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, KeyError, TypeError) as e:  # a size that does not match its dims, an unknown type
        raise OnnxImportError(f"initializer {tensor.name!r} cannot be read (dims {list(tensor.dims)}, "
                              f"type {tensor.data_type}): {type(e).__name__}: {e}") from e


def convert_nodes(ctx: Ctx, nodes: Any) -> None:
    for proto in nodes:
        node = OnnxNode.of(proto)
        if node.proto.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"unsupported op {node.proto.domain}::{node.describe()}: recc converts "
                                     "only the default ONNX domain")
        converter = CONVERTERS.get(node.op_type)
        if converter is None:
            raise UnsupportedOpError(f"unsupported op {node.describe()}; recc's ONNX frontend does not convert "
                                     f"{node.op_type} yet")
        ctx.origin = f"onnx {node.describe()}"
        lazy = next((v for v in map(ctx.env.get, node.inputs) if isinstance(v, Lazy)), None)
        if lazy is not None and node.op_type not in LAZY_CONSUMERS:  # fails only if something uses it as data
            root = lazy.data if isinstance(lazy.data, Lazy) else lazy
            for out in node.outputs:
                ctx.env[out] = Lazy(f"computed (by {node.describe()}, ...) from {root.what}", root)
            continue
        try:
            result = converter(ctx, node)
        except (ConversionError, ValueError, IndexError, KeyError, TypeError) as e:
            # IndexError...: a converter folding import-time arrays that a malformed model makes inconsistent
            if isinstance(e, OnnxImportError):
                raise
            what = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
            raise UnsupportedOpError(f"cannot convert {node.describe()}: {what}{e}") from e
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        empty = next((v for v in results if isinstance(v, Value) and 0 in v.type.shape), None)
        if empty is not None:
            raise UnsupportedOpError(f"cannot convert {node.describe()}: it computes an empty tensor ({empty.type}); "
                                     "recc's build does not take zero-size tensors")
        for out, value in zip(node.outputs, results):
            if out:
                ctx.env[out] = value


def _if(ctx: Ctx, node: OnnxNode) -> list[Any]:
    """If with a condition known at import time (the legacy exporter's `squeeze(dim)` on a dynamic-rank
    check): convert the branch taken in place."""
    cond = ctx.input(node, 0)
    if not isinstance(cond, np.ndarray) or cond.dtype == object or cond.size != 1:
        raise ConversionError("only an If whose condition is known at import time is supported")
    branch = node.attr("then_branch") if bool(np.ravel(cond)[0]) else node.attr("else_branch")
    convert_nodes(ctx, branch.node)
    return [ctx.get(o.name) for o in branch.output]


def _batch_dim_name(graph: onnx.GraphProto, initializers: set[str], batch_dim: str | None) -> str | None:
    names = set()
    for value_info in graph.input:
        if value_info.name in initializers:
            continue
        for d in value_info.type.tensor_type.shape.dim:
            names.add(d.dim_param)
    if batch_dim is not None:
        if batch_dim not in names:
            raise OnnxImportError(f"--batch-dim {batch_dim!r}: no input has a dim named so "
                                  f"(named dims: {sorted(n for n in names if n) or 'none'})")
        return batch_dim
    if "batch" in names:
        return "batch"
    for value_info in graph.input:
        dims = value_info.type.tensor_type.shape.dim
        if value_info.name not in initializers and dims and dims[0].dim_param:
            return dims[0].dim_param
    return None


def _input_type(value_info: onnx.ValueInfoProto, batch: str | None, graph: onnx.GraphProto) -> TensorType:
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        raise OnnxImportError(f"input {value_info.name!r} has no tensor type with a shape")
    shape: list[Dim] = []
    for axis, d in enumerate(tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value >= 0:
            shape.append(int(d.dim_value))
        elif (d.dim_param and d.dim_param == batch) or (axis == 0 and not d.dim_param):
            shape.append(sym("batch"))
        elif d.dim_param:  # another dynamic dim (e.g. the number of ids of variable-size bags)
            label = "".join(c if c.isalnum() else "_" for c in d.dim_param)
            shape.append(sym(label if label != "batch" else "batch_"))
        else:
            raise OnnxImportError(f"input {value_info.name!r} dim {axis} has no size and no name: recc keeps "
                                  f"only named dims symbolic; give it a size or a dim_param")
    try:
        return TensorType(tuple(shape), ir_dtype(tensor_type.elem_type))
    except ValueError as e:  # an element type recc has no IR dtype for: name the node that reads it
        reader = next((OnnxNode.of(n).describe() for n in graph.node if value_info.name in n.input), None)
        raise UnsupportedOpError(f"input {value_info.name!r}" + (f" of {reader}" if reader else "") +
                                 f": {e}") from e


def _output(ctx: Ctx, name: str) -> Value:
    v = ctx.get(name) if name in ctx.env else None
    if v is None:
        raise OnnxImportError(f"graph output {name!r} is not produced by any node")
    try:
        return ctx.as_value(v, name=name)
    except ConversionError as e:
        raise OnnxImportError(f"graph output {name!r}: {e}") from e


__all__ = ["import_onnx", "import_specialized", "convert_nodes", "CONVERTERS", "np"]
