"""`recc.runtime.ray_serve` on a real local Ray instance (2 CPUs): a small compiled DLRM deployed with two
replicas behind Ray Serve's HTTP proxy, talked to with httpx. Outputs equal the in-process call's (and eager
PyTorch's) within FP32_ATOL, bad requests get 400 with the Python API's message, concurrent requests are
batched by `@serve.batch` on both replicas, the binary tensor extension works, and everything shuts down.
Needs the ray extra (skipped without it, saying so). No wall-clock thresholds."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

import recc
from recc.cli import main
from recc.runtime.binary import decode_response, encode_request
from recc.runtime.protocol import model_metadata
from tests.conftest import FP32_ATOL
from tests.runtime.test_server import MODEL, _eager, _inputs, _request, check_bad_requests

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed: pip install 'recc[ray]'")
REPLICAS = 2
MAX_BATCH = 8  # requests per @serve.batch batch; a replica holds up to 16 ongoing requests (2 * MAX_BATCH)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_server(artifact: Path) -> Iterator[tuple[str, recc.CompiledModel]]:
    import ray
    from ray import serve

    from recc.runtime import ray_serve

    ray.init(num_cpus=2, include_dashboard=False)
    try:  # a 50 ms batching window: requests sent together coalesce even on a loaded machine
        url = ray_serve.run([f"{MODEL}={artifact}"], port=_free_port(), num_replicas=REPLICAS,
                            max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.05)
        yield url, recc.load(artifact)
    finally:
        serve.shutdown()
        ray.shutdown()
    assert not ray.is_initialized()


def _output(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


@needs_ray
def test_health_metadata_and_unknown_models(ray_server: tuple[str, recc.CompiledModel]) -> None:
    url, model = ray_server
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2").json()["models"] == [MODEL]
    assert httpx.get(f"{url}/v2/models/{MODEL}").json() == json.loads(json.dumps(model_metadata(MODEL, model)))
    assert httpx.get(f"{url}/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    for response in (httpx.get(f"{url}/v2/models/nope"), httpx.post(f"{url}/v2/models/nope/infer", json={"inputs": []})):
        assert response.status_code == 404
        assert response.json()["error"] == "unknown model 'nope'; this server serves 'rmc1'"
    assert httpx.get(f"{url}/v2/models/{MODEL}/infer").status_code == 405


@needs_ray
def test_concurrent_requests_are_batched_across_both_replicas(ray_server: tuple[str, recc.CompiledModel]) -> None:
    """32 requests at once: more than one replica's 16 ongoing requests, so Ray must route to both."""
    url, model = ray_server
    arrays = [_inputs(1 + i % 4, seed=40 + i) for i in range(32)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await asyncio.gather(*(client.post(f"/v2/models/{MODEL}/infer", json=_request(a)) for a in arrays))

    responses = asyncio.run(send_all())
    eager = _eager()
    for a, response in zip(arrays, responses):
        got = _output(response)
        np.testing.assert_allclose(got, model(*a).numpy(), atol=FP32_ATOL)
        np.testing.assert_allclose(got, eager(*map(torch.from_numpy, a)).detach().numpy(), atol=FP32_ATOL)
    batched = [int(r.headers["x-recc-batch-requests"]) for r in responses]
    assert max(batched) > 1 and max(batched) <= MAX_BATCH, batched
    assert len({r.headers["x-recc-replica"] for r in responses}) == REPLICAS


@needs_ray
def test_bad_requests_get_400_with_the_python_api_message(ray_server: tuple[str, recc.CompiledModel]) -> None:
    """The cases `recc serve` answers 400, less two it has alone: its body size limit and its deadline."""
    check_bad_requests(*ray_server, skip=("oversize body", "bad deadline"))


@needs_ray
def test_binary_tensors(ray_server: tuple[str, recc.CompiledModel]) -> None:
    url, model = ray_server
    dense, ids = _inputs(3, seed=60)
    body, headers = encode_request([("dense", "FP32", dense), ("sparse_ids", "INT64", ids)])
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    (out,) = decode_response(response.content, response.headers)
    np.testing.assert_allclose(out, model(dense, ids).numpy(), atol=FP32_ATOL)


@needs_ray
def test_scale_options_become_ray_serve_options() -> None:
    from recc.runtime.ray_serve import ScaleOptions, batch_calls

    fixed = ScaleOptions(num_replicas=3, num_cpus=2).deployment_options()
    assert fixed == {"num_replicas": 3, "max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 2}}
    scaled = ScaleOptions(autoscaling=(1, 4), max_batch_size=8).deployment_options()
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
    assert "num_replicas" not in scaled
    assert ScaleOptions(num_cpus=2).replica_threads() == 2
    with pytest.raises(ValueError, match="min <= max"):
        ScaleOptions(autoscaling=(3, 1))
    calls = batch_calls([([], 100), ([], 100), ([], 100), ([], 300), ([], 1)], max_rows=256, batched=True)
    assert [[rows for _, rows in call] for call in calls] == [[100, 100], [100], [300], [1]]
    assert len(batch_calls([([], 1)] * 3, max_rows=256, batched=False)) == 3


def test_serve_ray_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    monkeypatch.delitem(sys.modules, "recc.runtime.ray_serve", raising=False)
    assert main(["serve-ray", "model.recc", "--autoscale", "1,2"]) != 0
    assert "needs the ray extra: pip install 'recc[ray]'" in capsys.readouterr().err


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    with pytest.raises(SystemExit):
        main(args)
    return capsys.readouterr().err


def test_serve_ray_checks_its_autoscale_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert "expected MIN,MAX replicas" in _cli_error(["serve-ray", "model.recc", "--autoscale", "4"], capsys)
