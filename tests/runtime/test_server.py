"""`recc serve` over real HTTP: a uvicorn server on 127.0.0.1 (ephemeral port) serving a small compiled
DLRM, talked to with httpx. Protocol, errors (the Python API's messages), admission, batching, metrics,
the CLI and graceful shutdown, and a short bounded load-generator run. No wall-clock thresholds."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import recc
from recc.models import create
from recc.runtime.loadgen import LoadConfig, run_load
from recc.runtime.server import ServeConfig, ServerThread, create_app, load_models
from tests.conftest import FP32_ATOL

ROOT = Path(__file__).resolve().parents[2]
MODEL = "rmc1"
KSERVE = {"float32": "FP32", "int64": "INT64"}


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[tuple[str, recc.CompiledModel]]:
    models = load_models([f"{MODEL}={artifact}"])
    app = create_app(models, ServeConfig(sla_ms=None, max_delay_ms=20, max_body_bytes=1 << 20))
    with ServerThread(app) as running:
        yield running.url, models[MODEL]


@functools.cache
def _eager() -> Any:
    return create("dlrm-rmc1", scale=0.001, seed=0)


def _inputs(batch: int, seed: int) -> list[np.ndarray]:
    return [x.numpy() for x in _eager().example_inputs(batch, seed=seed)]


def _request(arrays: list[np.ndarray], names: tuple[str, ...] = ("dense", "sparse_ids"), **extra: Any) -> dict[str, Any]:
    tensors = [{"name": n, "shape": list(a.shape), "datatype": KSERVE[str(a.dtype)], "data": a.reshape(-1).tolist()}
               for n, a in zip(names, arrays)]
    return {"inputs": tensors, **extra}


def _python_error(model: recc.CompiledModel, *inputs: Any) -> str:
    with pytest.raises(ValueError) as e:
        model(*inputs)
    return str(e.value)


def test_health_and_metadata(server: tuple[str, recc.CompiledModel]) -> None:
    url, _ = server
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    meta = httpx.get(f"{url}/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["platform"] == "recc"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == \
        [("dense", "FP32", [-1, 128]), ("sparse_ids", "INT64", [-1, 8, 80])]
    assert [(t["datatype"], t["shape"]) for t in meta["outputs"]] == [("FP32", [-1, 1])]
    assert meta["parameters"]["batch_symbol"] == "batch"
    rows = _eager().info().tables[0].rows
    assert meta["inputs"][1]["parameters"]["id_limits"][0] == [1, 0, 1, rows]  # table 0: ids[:, 0, :] < rows


def test_inference_equals_the_in_process_call(server: tuple[str, recc.CompiledModel]) -> None:
    url, model = server
    arrays = _inputs(5, seed=3)
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=_request(arrays, id="q1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL and body["id"] == "q1"
    (out,) = body["outputs"]
    want = model(*arrays).numpy()
    assert out["datatype"] == "FP32" and out["shape"] == list(want.shape)
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), want, atol=FP32_ATOL)


def _bad_requests(model: recc.CompiledModel) -> list[tuple[str, Any, str]]:
    """(what, request body, the expected error: the Python API's message where there is one)."""
    dense, ids = _inputs(2, seed=4)
    bad_ids = ids.copy()
    bad_ids[1, 3, 7] = model.manifest.id_checks.ids["sparse_ids"][3].rows
    narrow = dense[:, :127].copy()
    request = _request([dense, ids])
    short = json.loads(json.dumps(request))
    short["inputs"][0]["data"] = short["inputs"][0]["data"][:-1]
    fraction = json.loads(json.dumps(request))
    fraction["inputs"][1]["data"][0] = 1.5
    return [
        ("wrong datatype", _request([dense.astype(np.int64), ids]), _python_error(model, dense.astype(np.int64), ids)),
        ("wrong shape", _request([narrow, ids]), _python_error(model, narrow, ids)),
        ("ids out of range", _request([dense, bad_ids]), _python_error(model, dense, bad_ids)),
        ("data length", short, "input 'dense': shape [2, 128] holds 256 values, data has 255"),
        ("missing input", _request([dense]), "expected inputs dense, sparse_ids: missing 'sparse_ids'"),
        ("extra input", _request([dense, ids, ids], names=("dense", "sparse_ids", "extra")),
         "expected inputs dense, sparse_ids: unknown 'extra'"),
        ("non-integer id", fraction, "input 'sparse_ids': INT64 data must be integers, got non-integer numbers"),
        ("malformed JSON", b'{"inputs": [', "malformed JSON"),
        ("not an object", [1, 2], 'the request must be a JSON object with a list "inputs"'),
        ("oversize body", b" " * (2 << 20), "request body over the limit of 1048576 bytes"),
        ("bad deadline", _request([dense, ids], parameters={"sla_ms": "soon"}), "parameters.sla_ms must be a positive"),
    ]


def test_bad_requests_get_400_with_the_python_api_message(server: tuple[str, recc.CompiledModel]) -> None:
    check_bad_requests(*server)


def check_bad_requests(url: str, model: recc.CompiledModel, skip: tuple[str, ...] = ()) -> None:
    """Each of `_bad_requests` but those named in `skip` gets 400 with its message; the server stays up."""
    for what, request, expected in _bad_requests(model):
        if what in skip:
            continue
        content = request if isinstance(request, bytes) else json.dumps(request).encode()
        response = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=content,
                              headers={"content-type": "application/json"})
        assert response.status_code == 400, (what, response.text)
        assert expected in response.json()["error"], (what, response.json()["error"])
    # the server is still up and answers a good request
    assert httpx.post(f"{url}/v2/models/{MODEL}/infer", json=_request(_inputs(1, seed=5))).status_code == 200


def test_unknown_model_is_404(server: tuple[str, recc.CompiledModel]) -> None:
    url, _ = server
    for response in (httpx.get(f"{url}/v2/models/nope"), httpx.post(f"{url}/v2/models/nope/infer", json={"inputs": []})):
        assert response.status_code == 404
        assert response.json()["error"] == "unknown model 'nope'; this server serves 'rmc1'"


def test_admission_refuses_a_request_that_would_miss_its_deadline(server: tuple[str, recc.CompiledModel]) -> None:
    url, _ = server
    request = _request(_inputs(2, seed=6), parameters={"sla_ms": 0.001})
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 429
    assert "misses the deadline of 0.001 ms" in response.json()["error"]
    generous = _request(_inputs(2, seed=6), parameters={"sla_ms": 60_000})
    assert httpx.post(f"{url}/v2/models/{MODEL}/infer", json=generous).status_code == 200


def _families(url: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}


def _larger_than_one_batches(url: str) -> float:
    samples = _families(url)["recc_batch_size"].samples
    count = next(s.value for s in samples if s.name == "recc_batch_size_count")
    ones = next(s.value for s in samples if s.name == "recc_batch_size_bucket" and s.labels["le"] == "1.0")
    return count - ones


def test_concurrent_requests_are_batched_and_each_gets_its_rows(server: tuple[str, recc.CompiledModel]) -> None:
    url, model = server
    before = _larger_than_one_batches(url)
    arrays = [_inputs(1 + i % 3, seed=20 + i) for i in range(12)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url) as client:
            return await asyncio.gather(*(client.post(f"/v2/models/{MODEL}/infer", json=_request(a)) for a in arrays))

    responses = asyncio.run(send_all())
    for a, response in zip(arrays, responses):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), model(*a).numpy(),
                                   atol=FP32_ATOL)
    assert _larger_than_one_batches(url) > before  # a 20 ms batching window: 12 requests at once coalesce


def _direct_runs(url: str) -> float:
    return sum(s.value for s in _families(url)["recc_direct"].samples if s.name == "recc_direct_total")


def test_an_idle_model_runs_a_small_request_directly(artifact: Path) -> None:
    """A request that finds its model idle skips the 20 ms batching window and the executor's thread when
    its predicted call fits inline_max_ms: that bound is set far above any call here, so the outcome does
    not depend on how fast this machine is."""
    models = load_models([f"{MODEL}={artifact}"])
    app = create_app(models, ServeConfig(sla_ms=None, max_delay_ms=20, inline_max_ms=60_000))
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:  # requests one by one
        url, model = running.url, models[MODEL]
        before = _direct_runs(url)
        for seed in (30, 31, 32):
            arrays = _inputs(1, seed=seed)
            out = client.post(f"/v2/models/{MODEL}/infer", json=_request(arrays)).json()["outputs"][0]
            np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]),
                                       model(*arrays).numpy(), atol=FP32_ATOL)
        assert _direct_runs(url) == before + 3


def test_metrics_parse_and_count(server: tuple[str, recc.CompiledModel]) -> None:
    url, _ = server
    httpx.post(f"{url}/v2/models/{MODEL}/infer", json=_request(_inputs(1, seed=7)))
    httpx.post(f"{url}/v2/models/{MODEL}/infer", json=_request(_inputs(1, seed=7), parameters={"sla_ms": 0.001}))
    families = _families(url)
    assert {"recc_requests", "recc_refused", "recc_queue_depth", "recc_batch_size", "recc_request_latency_seconds",
            "recc_inference_seconds"} <= set(families)
    by_status = {s.labels["status"]: s.value for s in families["recc_requests"].samples if s.name == "recc_requests_total"}
    assert by_status["200"] >= 1 and by_status["429"] >= 1
    assert any(s.value >= 1 for s in families["recc_refused"].samples if s.name == "recc_refused_total")


def test_loadgen_short_run_reports_sane_numbers(server: tuple[str, recc.CompiledModel], tmp_path: Path) -> None:
    url, _ = server
    from recc.cli import main

    out = tmp_path / "results.json"
    assert main(["loadgen", url, "--model", MODEL, "--qps", "50", "--duration", "2", "--max-requests", "200",
                 "--sizes", "lognormal:1.5,0.8", "--seed", "0", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["sent"] > 0 and results["errors"] == 0, results["error_examples"]
    assert results["sent"] == results["completed"] + results["refused"] + results["errors"]
    latency = results["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert results["achieved_qps"] > 0 and results["command"][:2] == ["recc", "loadgen"]
    assert set(results["git"]) == {"commit", "dirty"} and results["config"]["sizes"] == "lognormal:1.5,0.8"
    again = run_load(LoadConfig(url, MODEL, qps=50, duration_s=2, sizes="lognormal:1.5,0.8", max_requests=200), [])
    assert again["sent"] == results["sent"]  # the same seed: the same arrivals


def test_shutdown_drains_in_flight_requests(artifact: Path) -> None:
    # no direct runs: all four requests queue, in a 2 s batching window
    app = create_app(load_models([f"{MODEL}={artifact}"]), ServeConfig(sla_ms=None, max_delay_ms=2000, inline_max_ms=0))
    statuses: list[int] = []
    with ServerThread(app) as running:
        request = _request(_inputs(2, seed=8))
        senders = [threading.Thread(target=lambda: statuses.append(
            httpx.post(f"{running.url}/v2/models/{MODEL}/infer", json=request, timeout=30).status_code)) for _ in range(4)]
        for s in senders:
            s.start()
        for _ in range(6000):  # all queued, in a 2 s batching window (bounded: 30 s)
            if len(app.state.served[MODEL].batcher._waiting) == 4:
                break
            threading.Event().wait(0.005)
    for s in senders:  # leaving the block shut the server down while they were queued
        s.join()
    assert statuses == [200] * 4


def test_recc_serve_cli_starts_answers_and_stops_on_sigterm(artifact: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "recc.cli", "serve", str(artifact), "--port", "0", "--sla-ms", "50"],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        port = None
        for line in process.stderr:  # uvicorn logs the address it bound
            if match := re.search(r"http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "the server did not report its address"
        assert httpx.get(f"http://127.0.0.1:{port}/v2/models/rmc1").status_code == 200  # named after rmc1.recc
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
        assert process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log
    finally:
        if process.poll() is None:
            process.kill()
