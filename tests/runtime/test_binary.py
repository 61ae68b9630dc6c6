"""The KServe v2 binary tensor extension over real HTTP (uvicorn on 127.0.0.1, httpx): a binary request
answers what the JSON one does, binary outputs on request, mixed binary and JSON inputs, malformed binary
bodies refused with 400 (the server stays up), and a short bounded `recc loadgen --binary` run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import recc
from recc.runtime.binary import HEADER, decode_response, encode_request
from recc.runtime.server import ServeConfig, ServerThread, create_app, load_models
from tests.conftest import FP32_ATOL
from tests.runtime.test_server import MODEL, _inputs, _request

INFER = f"/v2/models/{MODEL}/infer"
NAMES = ("dense", "sparse_ids")
TYPES = ("FP32", "INT64")


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[tuple[str, recc.CompiledModel]]:
    models = load_models([f"{MODEL}={artifact}"])
    with ServerThread(create_app(models, ServeConfig(sla_ms=None, max_body_bytes=1 << 20))) as running:
        yield running.url, models[MODEL]


def _binary(arrays: list[np.ndarray], binary_outputs: bool = True, **parameters: Any) -> tuple[bytes, dict[str, str]]:
    return encode_request(list(zip(NAMES, TYPES, arrays)), binary_outputs=binary_outputs, parameters=parameters)


def test_a_binary_request_answers_what_the_json_one_does(server: tuple[str, recc.CompiledModel]) -> None:
    url, model = server
    arrays = _inputs(3, seed=40)
    with httpx.Client(base_url=url) as client:
        as_json = client.post(INFER, json=_request(arrays))
        body, headers = _binary(arrays)
        as_binary = client.post(INFER, content=body, headers=headers)
        body, headers = _binary(arrays, binary_outputs=False)
        json_out = client.post(INFER, content=body, headers=headers)
    assert as_json.status_code == as_binary.status_code == json_out.status_code == 200, as_binary.text
    assert as_binary.headers["content-type"] == "application/octet-stream" and HEADER in as_binary.headers
    head = json.loads(as_binary.content[:int(as_binary.headers[HEADER])])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 3 * 4 and "data" not in head["outputs"][0]
    assert HEADER not in json_out.headers and "data" in json_out.json()["outputs"][0]
    (want,) = decode_response(as_json.content, as_json.headers)
    for response in (as_binary, json_out):
        (got,) = decode_response(response.content, response.headers)
        assert got.dtype == np.float32 and got.shape == want.shape == (3, 1)
        np.testing.assert_array_equal(got, want.astype(np.float32))
    np.testing.assert_allclose(want, model(*arrays).numpy(), atol=FP32_ATOL)


def test_mixed_inputs_and_outputs_asked_by_name(server: tuple[str, recc.CompiledModel]) -> None:
    url, model = server
    dense, ids = _inputs(2, seed=41)
    blob = ids.astype("<i8").tobytes()
    request = {"inputs": [{"name": "dense", "datatype": "FP32", "shape": list(dense.shape), "data": dense.reshape(-1).tolist()},
                          {"name": "sparse_ids", "datatype": "INT64", "shape": list(ids.shape),
                           "parameters": {"binary_data_size": len(blob)}}],
               "outputs": [{"name": model.manifest.outputs[0].name, "parameters": {"binary_data": True}}], "id": "m1"}
    head = json.dumps(request).encode()
    response = httpx.post(f"{url}{INFER}", content=head + blob, headers={HEADER: str(len(head))})
    assert response.status_code == 200, response.text
    assert json.loads(response.content[:int(response.headers[HEADER])])["id"] == "m1"
    (got,) = decode_response(response.content, response.headers)
    np.testing.assert_allclose(got, model(dense, ids).numpy(), atol=FP32_ATOL)


def _malformed() -> list[tuple[str, bytes, dict[str, str], str]]:
    """(what, body, headers, the expected error)."""
    dense, ids = _inputs(2, seed=42)
    body, headers = _binary([dense, ids])
    n = int(headers[HEADER])
    head = json.loads(body[:n])
    short = json.loads(body[:n])
    short["inputs"][0]["parameters"]["binary_data_size"] -= 4  # sizes add up, but dense is 4 bytes short
    short["inputs"][1]["parameters"]["binary_data_size"] += 4
    short_head = json.dumps(short).encode()
    negative = json.loads(body[:n])
    negative["inputs"][0]["parameters"]["binary_data_size"] = -1
    negative_head = json.dumps(negative).encode()
    del head["inputs"][1]["parameters"]
    one_binary_head = json.dumps(head).encode()
    return [
        ("header past the body", body, {HEADER: str(len(body) + 1)}, "past the end of the body"),
        ("header not a number", body, {HEADER: "many"}, "must be a byte count"),
        ("size does not match the shape", short_head + body[n:], {HEADER: str(len(short_head))},
         "input 'dense': shape [2, 128] of FP32 is 1024 bytes, binary_data_size is 1020"),
        ("sizes run past the body", body[:-8], headers, "runs past the binary data"),
        ("bytes left over", body + b"\0" * 8, headers, "8 bytes after the JSON and the binary inputs"),
        ("negative size", negative_head + body[n:], {HEADER: str(len(negative_head))}, "non-negative integer"),
        ("a binary input without its size", one_binary_head + body[n:], {HEADER: str(len(one_binary_head))},
         "bytes after the JSON"),
        ("binary_data_size without the header", body[:n], {}, "without an Inference-Header-Content-Length"),
        ("unknown output", json.dumps({**json.loads(body[:n]), "outputs": [{"name": "nope"}]}).encode(), {},
         "unknown outputs 'nope'"),
    ]


def test_malformed_binary_requests_get_400(server: tuple[str, recc.CompiledModel]) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        for what, body, headers, expected in _malformed():
            response = client.post(INFER, content=body, headers=headers)
            assert response.status_code == 400, (what, response.text)
            assert expected in response.json()["error"], (what, response.json()["error"])
        body, headers = _binary(_inputs(1, seed=43))
        assert client.post(INFER, content=body, headers=headers).status_code == 200  # still up


def test_loadgen_binary_short_run(server: tuple[str, recc.CompiledModel], tmp_path: Path) -> None:
    url, _ = server
    from recc.cli import main

    out = tmp_path / "binary.json"
    assert main(["loadgen", url, "--model", MODEL, "--qps", "50", "--duration", "1", "--max-requests", "50",
                 "--sizes", "lognormal:1.5,0.8", "--binary", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["sent"] > 0 and results["completed"] == results["sent"], results["error_examples"]
    assert results["config"]["binary"] is True and results["command"][-1] == "--binary"
