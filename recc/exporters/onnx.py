"""`recc export-onnx`: an artifact's optimized graph as an ONNX file for looking at (Netron), not for running.

Every IR op becomes a node of the custom domain `ai.recc` with the IR's attributes, so the fused ops the
passes produced (batched_embedding_bag, dot_interaction, target_attention, gru, dense with its activation,
...) appear as they are; values carry their types (symbolic dims as dim_params). Weights are not in the
artifact in the IR's layout (the kernels' packed copies are), so parameters become graph inputs with
their shapes and a doc string saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from recc.compiler.artifact import ArtifactError, read_manifest

DOMAIN = "ai.recc"
_DTYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64,
           "int32": TensorProto.INT32, "int16": TensorProto.INT16, "uint16": TensorProto.UINT16,
           "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64, "bool": TensorProto.BOOL, "float16": TensorProto.FLOAT16,
           "bfloat16": TensorProto.BFLOAT16, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8}


def _info(value: dict[str, Any], doc: str = "") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(value["name"], _DTYPES.get(value["dtype"], TensorProto.UNDEFINED),
                                         value["shape"], doc_string=doc)


def _attribute(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        if all(isinstance(x, bool) or isinstance(x, int) for x in value):
            return [int(x) for x in value]
        if all(isinstance(x, (int, float)) for x in value):
            return [float(x) for x in value]
        return [str(x) for x in value]
    return value


def export_artifact(artifact: str | Path, out: str | Path) -> Path:
    root = Path(artifact)
    manifest = read_manifest(root)
    path = root / "graph.json"
    if not path.is_file():
        raise ArtifactError(f"{root}: no graph.json (compiled by an older recc); recompile to export it")
    graph = json.loads(path.read_text())
    nodes = [helper.make_node(n["op"], n["inputs"], [o["name"] for o in n["outputs"]], domain=DOMAIN,
                              name=n["outputs"][0]["name"], doc_string=n.get("origin", ""),
                              **{k: _attribute(v) for k, v in n["attrs"].items() if v != []})
             for n in graph["nodes"]]
    types = {o["name"]: o for n in graph["nodes"] for o in n["outputs"]}
    types.update({v["name"]: v for v in graph["inputs"] + graph["params"]})
    inputs = [_info(v) for v in graph["inputs"]]
    inputs += [_info(v, "a weight (values are in the artifact, in the kernels' layouts)") for v in graph["params"]]
    model = helper.make_model(
        helper.make_graph(nodes, graph["name"], inputs, [_info(types[name]) for name in graph["outputs"]],
                          value_info=[_info(o) for n in graph["nodes"] for o in n["outputs"]
                                      if o["name"] not in graph["outputs"]],
                          doc_string=f"recc {manifest.model}: optimized graph (pipeline "
                                     f"{', '.join(manifest.pipeline)})"),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)], producer_name="recc")
    onnx.save(model, str(out))
    return Path(out)
