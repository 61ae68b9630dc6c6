"""ONNX frontend: an ONNX model (file, bytes or onnx.ModelProto) -> recc IR with a symbolic batch dim.

    graph = import_onnx("model.onnx")            # or import_onnx(model_proto, batch_dim="N")
    compiled = recc.api.compile_graph(graph, "model")
"""

from recc.frontends.onnx.context import OnnxImportError, UnsupportedOpError
from recc.frontends.onnx.importer import import_onnx

__all__ = ["import_onnx", "OnnxImportError", "UnsupportedOpError"]
