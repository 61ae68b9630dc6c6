"""Hot swap over real HTTP (a uvicorn server on 127.0.0.1): two artifacts of the same architecture with
different weights (seeds 0 and 1). Requests in flight on the old model finish on it while new ones go to
the new model, nothing is lost under concurrent traffic, failed swaps leave the old model serving, and the
load endpoint answers only when enabled. In process and with a pool of 2 workers. No wall-clock thresholds:
in-flight requests are held on the old model by a gate, not by timing."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import torch

import recc
from recc.runtime.lifecycle import SwapError, signature_changes
from recc.runtime.server import ServeConfig, ServerThread, create_app, load_models
from tests.runtime.test_server import MODEL, _inputs, _request

pytestmark = pytest.mark.slow
BOUND_S = 120  # every wait below gives up after this (a hang fails instead of blocking the suite)


@pytest.fixture(scope="module")
def expected(artifact: Path, other_artifact: Path) -> Callable[[str, list[np.ndarray]], np.ndarray]:
    """expected("old" | "new", inputs): that artifact's in-process outputs."""
    models = {"old": recc.load(artifact), "new": recc.load(other_artifact)}
    return lambda which, inputs: models[which](*inputs).numpy()


def _app(artifact: Path, workers: int, allow_swap: bool = True) -> Any:
    config = ServeConfig(sla_ms=None, max_delay_ms=1, inline_max_ms=0, workers=workers, allow_swap=allow_swap)
    return create_app(load_models([f"{MODEL}={artifact}"]), config)


def _infer(client: httpx.Client, inputs: list[np.ndarray], **names: Any) -> np.ndarray:
    response = client.post(f"/v2/models/{MODEL}/infer", json=_request(inputs, **names), timeout=BOUND_S)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def _which(got: np.ndarray, inputs: list[np.ndarray], expected: Any) -> str:
    """"old" or "new": the model whose outputs these are (they must be one's)."""
    for which in ("old", "new"):
        if np.allclose(got, expected(which, inputs), rtol=1e-5, atol=1e-6):
            return which
    raise AssertionError(f"outputs match neither model: {got.ravel()[:4]}")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


def _gate(entry: Any) -> threading.Event:
    """Hold every call of `entry`'s batcher until the returned event is set."""
    gate = threading.Event()

    def gated(call: Any) -> Any:
        return lambda *tensors: (gate.wait(BOUND_S), call(*tensors))[1]

    entry.batcher.slots = [(executor, gated(call)) for executor, call in entry.batcher.slots]
    return gate


@pytest.mark.parametrize("workers", [0, 2])
def test_in_flight_requests_finish_on_the_old_model_new_ones_go_to_the_new(
        artifact: Path, other_artifact: Path, expected: Any, workers: int) -> None:
    app = _app(artifact, workers)
    with ServerThread(app) as running:
        old = app.served[MODEL]
        gate = _gate(old)
        queries = [_inputs(1 + i, seed=40 + i) for i in range(6)]
        answers: dict[int, np.ndarray] = {}

        def send(i: int) -> None:
            with httpx.Client(base_url=running.url) as client:
                answers[i] = _infer(client, queries[i])

        senders = [threading.Thread(target=send, args=(i,)) for i in range(len(queries))]
        for s in senders:
            s.start()
        _wait_for(lambda: old.active == len(queries), "the requests to reach the old model")
        swapped: list[Any] = []
        swapper = threading.Thread(target=lambda: swapped.append(app.swap(MODEL, str(other_artifact))))
        swapper.start()
        _wait_for(lambda: app.served[MODEL] is not old, "the new model to be in place")
        with httpx.Client(base_url=running.url) as client:  # the old model's calls are all still held
            for seed in (60, 61):
                inputs = _inputs(3, seed=seed)
                np.testing.assert_allclose(_infer(client, inputs), expected("new", inputs), rtol=1e-5, atol=1e-6)
        assert not answers and swapper.is_alive() and old.active == len(queries)
        gate.set()
        for s in senders + [swapper]:
            s.join(BOUND_S)
        assert sorted(answers) == list(range(len(queries)))  # all answered 200 (else _infer failed)
        for i, inputs in enumerate(queries):
            np.testing.assert_allclose(answers[i], expected("old", inputs), rtol=1e-5, atol=1e-6)
        assert swapped[0]["version"] == 2 and swapped[0]["signature_changes"] == []
        assert old.active == 0 and not old.batcher._waiting


@pytest.mark.parametrize("workers", [0, 2])
def test_a_swap_under_concurrent_traffic_loses_no_request(artifact: Path, other_artifact: Path, expected: Any,
                                                          workers: int) -> None:
    app = _app(artifact, workers)
    queries = [_inputs(1 + 7 * i, seed=80 + i) for i in range(4)]
    seen: list[tuple[int, int, str]] = []  # (sender, request number, which model answered)
    failures: list[BaseException] = []
    stop = threading.Event()
    with ServerThread(app) as running:
        def send(k: int) -> None:
            with httpx.Client(base_url=running.url) as client:
                n = 0
                while not stop.is_set() and not failures:
                    try:
                        inputs = queries[(k + n) % len(queries)]
                        seen.append((k, n, _which(_infer(client, inputs), inputs, expected)))
                    except BaseException as e:  # noqa: BLE001 - reported below
                        failures.append(e)
                    n += 1

        senders = [threading.Thread(target=send, args=(k,)) for k in range(3)]
        for s in senders:
            s.start()
        _wait_for(lambda: len(seen) >= 6 or bool(failures), "traffic before the swap")
        result = app.swap(MODEL, str(other_artifact))
        after = len(seen)
        _wait_for(lambda: len(seen) >= after + 6 or bool(failures), "traffic after the swap")
        stop.set()
        for s in senders:
            s.join(BOUND_S)
        with httpx.Client(base_url=running.url) as client:
            assert _which(_infer(client, queries[0]), queries[0], expected) == "new"
    assert not failures, failures[0]
    assert result["version"] == 2
    for k in range(3):  # each sender's answers: old ones, then new ones, none missing
        mine = [(n, which) for sender, n, which in seen if sender == k]
        assert [n for n, _ in mine] == list(range(len(mine)))
        order = [which for _, which in mine]
        assert order == sorted(order, key=("old", "new").index), order
    assert {which for _, _, which in seen} == {"old", "new"}


def _load(client: httpx.Client, name: str, body: Any) -> httpx.Response:
    return client.post(f"/v2/repository/models/{name}/load", json=body, timeout=BOUND_S)


def test_failed_swaps_leave_the_old_model_serving_and_a_good_one_replaces_it(
        artifact: Path, other_artifact: Path, expected: Any, tmp_path: Path) -> None:
    tampered = shutil.copytree(other_artifact, tmp_path / "tampered.recc")
    weight = next(p for p in sorted(tampered.rglob("*.npy")))
    data = bytearray(weight.read_bytes())
    data[-1] ^= 1
    weight.write_bytes(bytes(data))
    (tmp_path / "empty").mkdir()
    inputs = _inputs(5, seed=90)
    with ServerThread(_app(artifact, 0)) as running, httpx.Client(base_url=running.url) as client:
        before = client.get(f"/v2/models/{MODEL}").json()
        assert before["versions"] == ["1"] and before["parameters"]["version"] == 1
        refusals = [
            (MODEL, {"parameters": {"path": str(tampered)}}, 400, "does not match its sha256"),
            (MODEL, {"parameters": {"path": str(tmp_path / "nowhere.recc")}}, 400, "no such artifact"),
            (MODEL, {"parameters": {"path": str(tmp_path / "empty")}}, 400, "not a recc artifact"),
            (MODEL, {"path": str(other_artifact)}, 400, 'expected {"parameters": {"path"'),
            ("nope", {"parameters": {"path": str(other_artifact)}}, 404, "unknown model 'nope'"),
        ]
        for name, body, status, message in refusals:
            response = _load(client, name, body)
            assert response.status_code == status and message in response.json()["error"], (body, response.text)
            np.testing.assert_allclose(_infer(client, inputs), expected("old", inputs), rtol=1e-5, atol=1e-6)
        assert client.get(f"/v2/models/{MODEL}").json() == before
        response = _load(client, MODEL, {"parameters": {"path": str(other_artifact)}})
        assert response.status_code == 200, response.text
        after = client.get(f"/v2/models/{MODEL}").json()
        assert after["versions"] == ["2"] and response.json()["version"] == 2
        assert after["parameters"]["artifact_digest"] == response.json()["artifact_digest"] != \
            before["parameters"]["artifact_digest"] == response.json()["previous_digest"]
        assert after["inputs"] == before["inputs"] and after["outputs"] == before["outputs"]
        np.testing.assert_allclose(_infer(client, inputs), expected("new", inputs), rtol=1e-5, atol=1e-6)
        swaps = {tuple(line.split('"')[1:4:2]): line for line in client.get("/metrics").text.splitlines()
                 if line.startswith("recc_swaps_total{")}
        assert swaps[(MODEL, "failed")].endswith(" 3.0") and swaps[(MODEL, "done")].endswith(" 1.0")


class _Scorer(torch.nn.Module):
    """Another signature than DLRM's: dense features only."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(128, 1)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(dense))


def test_another_signature_is_refused_unless_allowed_and_then_published(artifact: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    scorer = recc.compile(_Scorer().eval(), (torch.rand(4, 128),), tuning_db=None).save(tmp_path / "scorer.recc")
    body = {"parameters": {"path": str(scorer)}}
    with ServerThread(_app(artifact, 0)) as running, httpx.Client(base_url=running.url) as client:
        response = _load(client, MODEL, body)
        assert response.status_code == 409, response.text
        assert "inputs ['dense', 'sparse_ids'] -> ['dense']" in response.json()["error"]
        assert client.get(f"/v2/models/{MODEL}").json()["versions"] == ["1"]
        response = _load(client, MODEL, {"parameters": {**body["parameters"], "allow_signature_change": True}})
        assert response.status_code == 200 and response.json()["signature_changes"], response.text
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert meta["parameters"]["signature_changed"] is True and [t["name"] for t in meta["inputs"]] == ["dense"]
        dense = _inputs(3, seed=92)[:1]
        np.testing.assert_allclose(_infer(client, dense, names=("dense",)), recc.load(scorer)(*dense).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_load_is_refused_unless_the_server_allows_swaps(artifact: Path, other_artifact: Path, expected: Any) -> None:
    inputs = _inputs(2, seed=91)
    with ServerThread(_app(artifact, 0, allow_swap=False)) as running, httpx.Client(base_url=running.url) as client:
        response = _load(client, MODEL, {"parameters": {"path": str(other_artifact)}})
        assert response.status_code == 403 and "--allow-swap" in response.json()["error"]
        np.testing.assert_allclose(_infer(client, inputs), expected("old", inputs), rtol=1e-5, atol=1e-6)


def test_python_swap_errors(artifact: Path) -> None:
    app = _app(artifact, 0)
    with pytest.raises(RuntimeError, match="not running"):
        app.swap(MODEL, str(artifact))
    with ServerThread(app), pytest.raises(SwapError) as e:
        app.swap("nope", str(artifact))
    assert e.value.status == 404

def test_recc_serve_allow_swap_reaches_the_config(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recc.cli import main
    from recc.runtime import server

    configs: list[ServeConfig] = []
    monkeypatch.setattr(server, "serve", lambda *args, config, **kwargs: configs.append(config))
    assert main(["serve", str(artifact), "--allow-swap"]) == 0 and main(["serve", str(artifact)]) == 0
    assert [c.allow_swap for c in configs] == [True, False]


def _spec(name: str, dtype: str, shape: list[Any]) -> Any:
    return SimpleNamespace(name=name, dtype=dtype, shape=shape)


def test_signature_changes_name_what_differs(artifact: Path) -> None:
    model = recc.load(artifact)
    assert signature_changes(model, model) == []
    m = model.manifest
    other = SimpleNamespace(manifest=SimpleNamespace(
        inputs=[_spec(m.inputs[0].name, "float64", list(m.inputs[0].shape)), m.inputs[1]],
        outputs=[_spec("score", m.outputs[0].dtype, list(m.outputs[0].shape))]))
    changes = signature_changes(model, other)
    assert len(changes) == 2
    assert changes[0].startswith("input 'dense': float32") and "-> float64" in changes[0]
    assert changes[1].startswith("outputs [") and "['score']" in changes[1]
