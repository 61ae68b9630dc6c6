"""A fuzzer for malformed ONNX files: ONNX exports of built-in models (the legacy exporter, a symbolic
batch), damaged by tests/fuzz/onnx_mutations.py (bit flips, truncation and inserted bytes in the file;
wrong input dims, ranks and dtypes, dangling inputs, unknown and swapped op types, bad attributes,
initializers of the wrong size, dims or dtype, cycles, dropped nodes, an empty graph, missing or
duplicated outputs, other opsets), then given to `import_onnx` as bytes.

Every case must end in one of three ways: `import_onnx` refuses it with OnnxImportError (the message
names the problem); or it imports and the compiled model (`compile_graph`, the full pipeline and a TVM
build) refuses the original inputs with a ValueError; or it computes what ONNX Runtime computes on the
damaged file (NaN where ORT has NaN, else rtol 1e-4 + atol 1e-5; where ORT refuses the file, what the
undamaged model computes). Any other exception, a crash, a hang or another answer fails.
The CI tier runs EXAMPLES cases; RECC_ONNX_FUZZ_EXAMPLES raises it and RECC_FUZZ_LOG writes one JSON line
per case (bench/results/fuzz/onnx.md came from RECC_ONNX_FUZZ_EXAMPLES=1000).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recc.api import compile_graph
from recc.frontends.onnx import OnnxImportError, import_onnx
from recc.models import create

from tests.fuzz.onnx_mutations import mutate

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("RECC_ONNX_FUZZ_EXAMPLES", "30"))
LOG = os.environ.get("RECC_FUZZ_LOG")
MODELS = ("ncf", "dlrm-rmc1", "din")
RTOL, ATOL = 1e-4, 1e-5


def _export(name: str) -> tuple[bytes, dict[str, np.ndarray], list[np.ndarray]]:
    """The model's ONNX bytes, inputs at batch 3 by name, and ORT's outputs for them."""
    model = create(name, scale=0.001, seed=0)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, model.example_inputs(4, seed=0), f, input_names=list(model.input_names),
                          dynamo=False, dynamic_axes={n: {0: "batch"} for n in model.input_names})
    feeds = {n: t.numpy() for n, t in zip(model.input_names, model.example_inputs(3, seed=1))}
    data = f.getvalue()
    return data, feeds, _ort(data, feeds)


def _ort(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: feeds[n] for n in names})


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[bytes, dict[str, np.ndarray], list[np.ndarray]]]:
    return {name: _export(name) for name in MODELS}


def _same(got: Any, want: list[np.ndarray], what: str) -> None:
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.as_tensor(np.asarray(g)), torch.as_tensor(w), rtol=RTOL, atol=ATOL,
                                   equal_nan=True, msg=lambda m: f"{what}: {m}")


def outcome(data: bytes, feeds: dict[str, np.ndarray], original: list[np.ndarray]) -> str:
    try:
        graph = import_onnx(data)
    except OnnxImportError as e:
        return f"refused: {type(e).__name__}"
    compiled = compile_graph(graph, "mutant", tuning_db=None)
    try:
        want, reference = _ort(data, feeds), "ORT"
    except Exception:  # noqa: BLE001 - ORT's verdict, whatever it raises
        want, reference = original, "the undamaged model (ORT refuses the file)"
    try:
        got = compiled(*(torch.from_numpy(feeds[v.name]) for v in graph.inputs))
    except ValueError:
        return "imported; call refused: ValueError"
    _same(got, want, f"compiled mutant vs {reference}")
    return f"imported; same as {'ORT' if reference == 'ORT' else 'the undamaged model'}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_damaged_onnx_is_refused_or_computed_as_ort(sources, data) -> None:
    name = data.draw(st.sampled_from(MODELS))
    raw, feeds, original = sources[name]
    kind, damaged = mutate(raw, onnx.load_from_string(raw), data.draw)
    try:
        result = outcome(damaged, feeds, original)
    except BaseException as e:
        result = f"FAILED: {type(e).__name__}"
        raise
    finally:
        if LOG:
            with open(LOG, "a") as f:
                f.write(json.dumps({"test": name, "damage": kind, "outcome": result}) + "\n")
