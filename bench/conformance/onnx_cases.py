"""ONNX's node test cases (onnx.backend.test, generated in memory by onnx's own loader): which are out of
scope and why, and running one case on recc (and on ONNX Runtime, the anchor) with ONNX's own comparison
(onnx.backend.test.runner.Runner.assert_similar_outputs at the case's rtol/atol, as BackendTest does).
"""

from __future__ import annotations

import re
import signal
import time
import traceback
from typing import Any, Callable

import numpy as np
import onnx

MAX_OPSET = 21

# Every exclusion is a category with its reason (docs/conformance.md); a case gets the first that applies.
CATEGORIES = {
    "opset>21": "the model imports the default ONNX domain at an opset above 21; the target covers opsets <= 21",
    "training": "training-only ops (ai.onnx.preview.training: Adagrad, Adam, Momentum, Gradient) or a training "
                "mode (Dropout / BatchNormalization training_mode=1): recc compiles inference",
    "random": "random-number ops (RandomNormal(Like), RandomUniform(Like), Bernoulli, Multinomial): outputs are "
              "samples, not a function of the inputs; no fixed expected output to compare with",
    "sequence/optional/map": "values of ONNX sequence, optional or map type (Sequence*, Optional*, "
                             "SplitToSequence, ConcatFromSequence, ...): recc's IR has tensors only",
    "string": "string tensors (StringNormalizer, StringConcat, StringSplit, RegexFullMatch, string Cast/Equal/"
              "...): recc's IR has numeric dtypes only",
    "ai.onnx.ml / preview domain": "ops outside the default ONNX domain (ai.onnx.ml's classical-ML ops: tree "
                                   "ensembles, label encoders, ...; ai.onnx.preview): a separate operator set "
                                   "(BackendTest itself skips ai.onnx.ml without ONNX_ML)",
    "sub-byte/fp8/complex dtypes": "float8 (E4M3/E5M2 variants), float4, int4/uint4, int2/uint2 and complex "
                                   "element types: storage formats with no numpy dtype and no recc IR dtype",
}

RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
SEQUENCE_OPS = {"SequenceConstruct", "SequenceEmpty", "SequenceAt", "SequenceInsert", "SequenceErase",
                "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence", "Optional",
                "OptionalHasElement", "OptionalGetElement"}
STRING_OPS = {"StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch"}
TP = onnx.TensorProto
EXOTIC_DTYPES = {getattr(TP, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
                                          "FLOAT8E8M0", "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2",
                                          "COMPLEX64", "COMPLEX128") if hasattr(TP, n)}


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                nodes.extend(_all_nodes(sub))
    return nodes


def _value_types(graph: onnx.GraphProto) -> list[onnx.TypeProto]:
    return [v.type for v in list(graph.input) + list(graph.output) + list(graph.value_info)]


def _elem_types(model: onnx.ModelProto) -> set[int]:
    types = {t.tensor_type.elem_type for t in _value_types(model.graph) if t.HasField("tensor_type")}
    types |= {t.data_type for t in model.graph.initializer}
    for node in _all_nodes(model.graph):
        for attr in node.attribute:
            if attr.name in ("to", "dtype", "output_datatype") and attr.type == onnx.AttributeProto.INT:
                types.add(attr.i)
            if attr.HasField("t"):
                types.add(attr.t.data_type)
    return types


def exclusion(name: str, model: onnx.ModelProto) -> str | None:
    """The category that puts this case out of scope, or None."""
    opset = default_opset(model)
    ops = {n.op_type for n in _all_nodes(model.graph)}
    domains = {o.domain for o in model.opset_import} - {"", "ai.onnx"}
    if opset is not None and opset > MAX_OPSET:
        return "opset>21"
    if "ai.onnx.preview.training" in domains or "Gradient" in ops or re.search(r"_training(_|$)", name):
        return "training"
    if ops & RANDOM_OPS:
        return "random"
    kinds = {t.WhichOneof("value") for t in _value_types(model.graph)}
    if ops & SEQUENCE_OPS or kinds & {"sequence_type", "optional_type", "map_type"}:
        return "sequence/optional/map"
    elem_types = _elem_types(model)
    if ops & STRING_OPS or TP.STRING in elem_types:
        return "string"
    if domains:
        return "ai.onnx.ml / preview domain"
    if elem_types & EXOTIC_DTYPES:
        return "sub-byte/fp8/complex dtypes"
    return None


def load_cases(names: set[str] | None = None) -> dict[str, Any]:
    """onnx's node test cases by name (all, or those in `names`)."""
    import warnings

    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow warnings (float8 casts, log(0))
        with np.errstate(all="ignore"):
            cases = load_model_tests(kind="node")
    return {c.name: c for c in cases if names is None or c.name in names}


class CaseTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def _data_sets(case: Any) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    from onnx.backend.test.runner import _normalize_tensor

    return [([_normalize_tensor(x) for x in ins], [_normalize_tensor(x) for x in outs]) for ins, outs in case.data_sets]


def compare(case: Any, expected: list[np.ndarray], got: Any) -> None:
    """ONNX's own comparison (raises AssertionError on a mismatch)."""
    from onnx.backend.test.runner import Runner

    Runner.assert_similar_outputs(ref_outputs=expected, outputs=got, rtol=case.rtol, atol=case.atol)


def names_node(message: str, model: onnx.ModelProto) -> bool:
    """True if `message` names one of the model's nodes with its op (the frontend's `Op node 'name'`)."""
    for node in _all_nodes(model.graph):
        name = node.name or (node.output[0] if node.output else "?")
        if f"{node.op_type} node {name!r}" in message:
            return True
    return False


def run_with(prepare: Callable[[onnx.ModelProto], Any], case: Any, timeout_s: int) -> dict[str, Any]:
    """Prepare and run one case; {status: passed|wrong|refused|crashed, reason, seconds, ...}."""
    from recc.frontends.onnx import OnnxImportError

    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    result: dict[str, Any]
    try:
        rep = prepare(case.model)
        for inputs, expected in _data_sets(case):
            compare(case, expected, rep.run(inputs))
        result = {"status": "passed"}
        specialized = sorted(getattr(rep, "specialized", ()) or ())
        if specialized:
            result["specialized_inputs"] = specialized
    except AssertionError as e:
        result = {"status": "wrong", "reason": _first_lines(str(e))}
    except CaseTimeout:
        result = {"status": "crashed", "reason": f"timeout after {timeout_s} s"}
    except OnnxImportError as e:
        named = names_node(str(e), case.model)
        result = {"status": "refused" if named else "crashed",
                  "reason": ("" if named else "refused without naming the node and op: ") + _first_lines(str(e))}
    except Exception as e:  # noqa: BLE001 - any other failure is a crash, recorded with its type
        where = traceback.extract_tb(e.__traceback__)[-1]
        result = {"status": "crashed", "reason": f"{type(e).__name__}: {_first_lines(str(e))} "
                                                 f"(at {where.filename.split('/')[-1]}:{where.lineno})"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _first_lines(text: str, limit: int = 400) -> str:
    text = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


class OrtRep:
    """ONNX Runtime as the anchor: one InferenceSession per case, CPU provider."""

    def __init__(self, model: onnx.ModelProto) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {n: np.asarray(x) for n, x in zip(self.names, inputs)})  # 0-d: an array


def case_ops(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


__all__ = ["CATEGORIES", "exclusion", "load_cases", "run_with", "OrtRep", "compare", "names_node", "case_ops"]
