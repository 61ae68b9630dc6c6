"""Reading an ONNX model: a path, bytes or a ModelProto -> a checked ModelProto with its weights loaded.

Every way a file can be wrong gets its own message: not ONNX at all, cut short, failing onnx.checker,
or pointing at an external-data file that is not there. External data is read with onnx's own loader
(raw little-endian arrays; nothing is unpickled).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from recc.frontends.onnx.context import OnnxImportError


def read_model(model: onnx.ModelProto | str | os.PathLike[str] | bytes) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto, base = model, None
    elif isinstance(model, bytes):
        proto, base = _parse(model, "the given bytes"), None
    else:
        path = Path(model)
        if not path.is_file():
            raise OnnxImportError(f"no ONNX file at {path}")
        proto, base = _parse(path.read_bytes(), str(path)), path.parent
    _load_external_data(proto, base)
    try:
        onnx.checker.check_model(proto, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as e:  # ValueError: e.g. a name that is not UTF-8
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"the model fails onnx.checker: {reason}") from e
    _check_types(proto)
    return proto


def _check_types(proto: onnx.ModelProto) -> None:
    """ONNX's type and shape inference, strict: an op whose inputs break its type constraints (a MatMul
    of float32 by int32, an initializer retyped) is refused here, as ONNX Runtime refuses it, instead of
    being converted with casts into another function. The weights' bytes are set aside meanwhile (the
    inference needs their types and dims, not their values; and protobuf cannot pass a model over 2 GB)."""
    weights = [(t, t.raw_data) for t in proto.graph.initializer if len(t.raw_data) > 1 << 16]
    for tensor, _ in weights:
        tensor.ClearField("raw_data")
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{_failing_node(proto, reason)}the model fails ONNX type and shape inference: "
                              f"{reason}") from e
    finally:
        for tensor, raw in weights:
            tensor.raw_data = raw


def _failing_node(proto: onnx.ModelProto, reason: str) -> str:
    """'<Op> node <name>: ' for the top-level node ONNX's inference error names (its first op_type, and
    node name when given), else ''."""
    found = re.search(r"\(op_type:([A-Za-z0-9_]+)(?:, node name: ([^)]*))?\)", reason)
    if not found:
        return ""
    op, name = found.group(1), (found.group(2) or "").strip()
    for node in proto.graph.node:
        label = node.name or (node.output[0] if node.output else "?")
        if node.op_type == op and (not name or name in (node.name, label)):
            return f"{op} node {label!r}: "
    return ""


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        hint = " (the file looks cut short)" if _looks_truncated(data) else ""
        raise OnnxImportError(f"{where} is not a valid ONNX model{hint}: {e}") from e
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise OnnxImportError(f"{where} is not an ONNX model (no graph / IR version in it)")
    return proto


def _looks_truncated(data: bytes) -> bool:
    """Protobuf bytes that start like a ModelProto (field 1, ir_version, a varint) but fail to parse."""
    return len(data) > 2 and data[0] == 0x08


def _load_external_data(proto: onnx.ModelProto, base: Path | None) -> None:
    from onnx.external_data_helper import _get_all_tensors, load_external_data_for_tensor, uses_external_data

    external = [t for t in _get_all_tensors(proto) if uses_external_data(t)]
    if not external:
        return
    if base is None:
        raise OnnxImportError("the model keeps weights in external-data files; pass the .onnx path (not a "
                              "ModelProto or bytes) so recc can find them beside it")
    for tensor in external:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not (base / location).is_file():
            raise OnnxImportError(f"external-data file {location!r} for initializer {tensor.name!r} is missing "
                                  f"(looked in {base})")
        try:
            load_external_data_for_tensor(tensor, str(base))
        except Exception as e:  # onnx raises several types for bad offsets/lengths; the user needs the reason
            raise OnnxImportError(f"cannot read external data for {tensor.name!r} from {location!r}: {e}") from e
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
