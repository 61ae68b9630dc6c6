"""The executor pool: worker processes running an artifact (or an eager module), query splitting across
them behind the real HTTP server, and recovery when a worker dies (SIGKILL) with requests in flight."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

import recc
from recc.runtime.pool import Worker, WorkerCrashed, cpu_sets, start_workers
from recc.runtime.server import ServeConfig, ServerThread, create_app, load_models
from tests.runtime.test_server import MODEL, _eager, _inputs, _request

pytestmark = pytest.mark.slow


class _DiesOnNegative(torch.nn.Module):
    """Doubles its input; kills its own process when the input holds a negative number (a crash in
    native code, as far as the parent can tell)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            os.kill(os.getpid(), signal.SIGKILL)
        if bool((x > 1e6).any()):
            raise ValueError("value too large")
        return x * 2


def make_dies_on_negative() -> torch.nn.Module:
    return _DiesOnNegative()


def test_cpu_sets_are_disjoint_until_the_cores_run_out() -> None:
    cores = sorted(os.sched_getaffinity(0))
    sets = cpu_sets(len(cores), 1)
    assert sorted(c for s in sets for c in s) == cores
    assert cpu_sets(1, len(cores)) == [cores]


def test_worker_runs_an_eager_module_keeps_error_classes_and_replaces_itself() -> None:
    worker = Worker(("factory", "tests.runtime.test_pool:make_dies_on_negative", {}), [sorted(os.sched_getaffinity(0))[0]])
    try:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(worker(x)[0], x * 2)
        with pytest.raises(ValueError, match="value too large"):
            worker(np.full((1, 1), 1e7, np.float32))
        pid = worker.pid
        os.kill(pid, signal.SIGKILL)  # killed between calls: the next call runs on a replacement
        np.testing.assert_array_equal(worker(x)[0], x * 2)
        assert worker.restarts == 1 and worker.pid != pid
        with pytest.raises(WorkerCrashed, match="died running it again"):  # the call itself kills workers
            worker(np.full((1, 1), -1.0, np.float32))
        np.testing.assert_array_equal(worker(x)[0], x * 2)  # and the pool still works after it
    finally:
        worker.close()


def test_workers_run_the_artifact_as_the_process_does(artifact: Path) -> None:
    model = recc.load(artifact)
    workers = start_workers(("artifact", str(artifact)), 2)
    try:
        for batch, seed in ((1, 0), (37, 1)):
            inputs = _inputs(batch, seed)
            expected = model(*inputs).numpy()
            for worker in workers:
                np.testing.assert_array_equal(worker(*inputs)[0], expected)
        bad = _inputs(2, 2)
        bad[1] = bad[1] + 10**9
        with pytest.raises(ValueError, match="out of range"):
            workers[0](*bad)
    finally:
        for worker in workers:
            worker.close()


@pytest.fixture(scope="module")
def pool_server(artifact: Path) -> Iterator[tuple[str, Any, recc.CompiledModel]]:
    models = load_models([f"{MODEL}={artifact}"])
    config = ServeConfig(sla_ms=None, max_batch=16, max_delay_ms=1, workers=2)
    app = create_app(models, config)
    with ServerThread(app) as running:
        yield running.url, app, models[MODEL]


def _infer(client: httpx.Client, url: str, inputs: list[np.ndarray]) -> np.ndarray:
    response = client.post(f"{url}/v2/models/{MODEL}/infer", json=_request(inputs), timeout=60)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def _metric(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics").text
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_split_queries_equal_the_in_process_call(pool_server: tuple[str, Any, recc.CompiledModel]) -> None:
    url, _, model = pool_server
    with httpx.Client() as client:
        for batch, seed in ((1, 3), (16, 4), (53, 5), (200, 6)):  # 53 rows: parts of 16, 16, 16, 5
            inputs = _inputs(batch, seed)
            np.testing.assert_allclose(_infer(client, url, inputs), model(*inputs).numpy(), rtol=1e-6, atol=1e-7)
        eager = _eager()(*[torch.from_numpy(x) for x in _inputs(53, 5)]).detach().numpy()
        np.testing.assert_allclose(_infer(client, url, _inputs(53, 5)), eager, rtol=1e-4, atol=1e-5)
    calls = {labels["le"]: value for labels, value in _metric(url, "recc_batch_size_bucket")}
    assert calls["16.0"] == calls["+Inf"] > 0  # every call at most max_batch rows: the queries were split


def test_concurrent_mixed_queries_each_get_their_own_rows(pool_server: tuple[str, Any, recc.CompiledModel]) -> None:
    url, _, model = pool_server
    queries = [_inputs(b, 100 + i) for i, b in enumerate([1, 40, 3, 17, 64, 2, 33, 9] * 2)]
    results: dict[int, np.ndarray] = {}

    def send(i: int) -> None:
        with httpx.Client() as client:
            results[i] = _infer(client, url, queries[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, inputs in enumerate(queries):
        np.testing.assert_allclose(results[i], model(*inputs).numpy(), rtol=1e-6, atol=1e-7)


def test_bad_request_is_400_and_the_pool_keeps_serving(pool_server: tuple[str, Any, recc.CompiledModel]) -> None:
    url, _, model = pool_server
    bad = _inputs(20, 7)
    bad[1] = bad[1] + 10**9
    with pytest.raises(ValueError) as python_error:
        model(*bad)
    with httpx.Client() as client:
        response = client.post(f"{url}/v2/models/{MODEL}/infer", json=_request(bad))
        assert response.status_code == 400 and response.json()["error"] == str(python_error.value)
        good = _inputs(20, 8)
        np.testing.assert_allclose(_infer(client, url, good), model(*good).numpy(), rtol=1e-6, atol=1e-7)


def test_a_worker_killed_mid_run_loses_no_request(pool_server: tuple[str, Any, recc.CompiledModel]) -> None:
    url, app, model = pool_server
    workers = [worker for _, worker in app.state.served[MODEL].batcher.slots]
    n = 80
    queries = [_inputs(48, 200 + i) for i in range(n)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def send(indices: range) -> None:
        with httpx.Client() as client:
            for i in indices:
                try:
                    results[i] = _infer(client, url, queries[i])
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

    senders = [threading.Thread(target=send, args=(range(k, n, 4),)) for k in range(4)]
    for t in senders:
        t.start()
    while len(results) < 8 and not errors:  # the pool is busy: kill one worker under load
        time.sleep(0.001)
    os.kill(workers[0].pid, signal.SIGKILL)
    for t in senders:
        t.join()
    with httpx.Client() as client:  # 48 rows in parts of 16: both workers get a part
        _infer(client, url, queries[0])
    assert not errors and sorted(results) == list(range(n))
    for i, inputs in enumerate(queries):
        np.testing.assert_allclose(results[i], model(*inputs).numpy(), rtol=1e-6, atol=1e-7)
    assert sum(w.restarts for w in workers) >= 1
    assert [value for _, value in _metric(url, "recc_worker_restarts_total")] == [sum(w.restarts for w in workers)]


def test_tune_serving_searches_saves_and_serve_reads_the_config(artifact: Path, tmp_path: Path) -> None:
    """A short, bounded search (small loads) over two layouts: each layout's curve covers what its climb
    visited, the best is chosen, the config lands beside the artifact, and `recc serve`'s settings come
    from it unless given on the command line."""
    import argparse
    import shutil

    from recc.runtime.commands import _tuned_settings
    from recc.runtime.drive import artifact_deployment
    from recc.runtime.query_sizes import parse_sizes
    from recc.runtime.tune import Objective, config_path, layouts, load_config, save_config, tune_layouts

    assert layouts(2) == [(2, 1), (0, 2)] and layouts(4) == [(4, 1), (2, 2), (0, 4)]
    copy = shutil.copytree(artifact, tmp_path / "rmc1.recc")
    lines: list[str] = []
    objective = Objective(sla_ms=50, duration_s=0.2, min_queries=20, max_duration_s=1.0, refine=1, max_steps=4)
    result = tune_layouts(lambda w, t: artifact_deployment(MODEL, str(copy), w, t), [(2, 1), (0, 2)],
                          parse_sizes("fixed:40"), objective, say=lines.append)
    assert [(l["workers"], l["worker_threads"], l["split"]) for l in result["layouts"]] == [(2, 1, True), (0, 2, False)]
    for layout in result["layouts"]:
        visited = [point["max_batch"] for point in layout["curve"]]
        assert set(visited) <= {4, 8, 16, 32, 40}  # the ladder stops at the largest query (40)
        assert layout["max_qps"] == max(p["max_qps"] for p in layout["curve"])
        for trial in (t for point in layout["curve"] for t in point["trials"]):  # >= min_queries, unless the
            assert trial["queries"] >= 20 or trial["offered_qps"] * 1.0 < 40  # 1 s cap cut a slow rate short
    assert result["max_qps"] == max(l["max_qps"] for l in result["layouts"])
    assert any("meets the SLA" in line or "misses the SLA" in line for line in lines)
    save_config(config_path(copy), copy, result, ["test"])
    saved = {k: result[k] for k in ("max_batch", "workers", "worker_threads", "split")}
    assert load_config(copy) == saved
    args = argparse.Namespace(artifacts=[str(copy)], max_batch=None, workers=None, worker_threads=None, no_split=False)
    assert _tuned_settings(args) == {"rmc1": saved}
    args.max_batch, args.no_split = 8, True  # the command line wins
    assert _tuned_settings(args) == {"rmc1": {"workers": saved["workers"], "worker_threads": saved["worker_threads"]}}
    config_path(copy).write_text("{\"max_batch\": \"x\"}")
    with pytest.raises(ValueError, match="not a serving config"):
        load_config(copy)


def test_python_client_over_the_binary_protocol(pool_server: tuple[str, Any, recc.CompiledModel]) -> None:
    from recc.serving import Client, ServerError

    url, _, model = pool_server
    inputs = _inputs(30, 9)
    with Client(url) as client:
        assert client.live() and client.models() == [MODEL]
        (by_position,) = client.infer(MODEL, *inputs)
        (by_name,) = client.infer(MODEL, sparse_ids=torch.from_numpy(inputs[1]), dense=inputs[0], sla_ms=1000)
        np.testing.assert_allclose(by_position, model(*inputs).numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(by_name, by_position)
        bad = [inputs[0], inputs[1] + 10**9]
        with pytest.raises(ValueError) as python_error:
            model(*bad)
        with pytest.raises(ServerError) as server_error:
            client.infer(MODEL, *bad)
        assert server_error.value.status == 400 and server_error.value.message == str(python_error.value)
        with pytest.raises(ServerError, match="HTTP 404: unknown model 'nope'"):
            client.infer("nope", *inputs)
        with pytest.raises(ValueError, match="no input"):
            client.infer(MODEL, dense=inputs[0], other=inputs[1])


def test_loadgen_sweeps_rates_and_plots_latency_against_load(pool_server: tuple[str, Any, recc.CompiledModel],
                                                             tmp_path: Path) -> None:
    import json

    from recc.cli import main

    url, _, _ = pool_server
    plot, out = tmp_path / "curve.png", tmp_path / "curve.json"
    assert main(["loadgen", url, "--model", MODEL, "--qps", "20,40", "--duration", "0.5", "--max-requests", "8",
                 "--sizes", "fixed:4", "--sla-ms", "1000", "--plot", str(plot), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [run["config"]["qps"] for run in results["runs"]] == [20.0, 40.0]
    assert all(run["completed"] == run["sent"] > 0 for run in results["runs"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hill_climb_patience_and_zero_plateau() -> None:
    from recc.runtime.tune import candidates, hill_climb

    assert candidates(40) == [4, 8, 16, 32, 40] and candidates(1000)[-2:] == [512, 1000] and candidates(1) == [4]
    ladder = [4, 8, 16, 32, 64, 128, 256, 512, 1000, 2048]
    visited: list[int] = []

    def bumpy(value: int) -> float:  # a dip at 128 before the peak at 256
        visited.append(value)
        return {4: 1, 8: 2, 16: 3, 32: 4, 64: 5, 128: 4.5, 256: 9, 512: 7, 1000: 6, 2048: 20}[value]

    scores = hill_climb(bumpy, ladder, 64, 0.02)
    assert max(scores, key=scores.get) == 256  # past the dip at 128
    assert 1000 in visited and 2048 not in visited and 4 not in visited  # two steps of patience, no more
    visited.clear()
    scores = hill_climb(lambda v: visited.append(v) or (3.0 if v == 1000 else 0.0), ladder, 64, 0.02)
    assert max(scores, key=scores.get) == 1000 and sorted(visited) == ladder  # a zero plateau is crossed


def test_loadgen_replays_a_recorded_trace(pool_server: tuple[str, Any, recc.CompiledModel], tmp_path: Path) -> None:
    from recc.runtime.loadgen import LoadConfig, run_load

    url, _, _ = pool_server
    trace = tmp_path / "trace.txt"
    trace.write_text("0.0 3\n0.05 70\n0.05 1\n0.3 20\n")
    results = run_load(LoadConfig(url, MODEL, trace=str(trace), record_requests=True, sla_ms=1000), [])
    assert results["sent"] == results["completed"] == 4
    assert sorted((round(r[0], 2), r[3]) for r in results["requests"]) == [(0.0, 3), (0.05, 1), (0.05, 70), (0.3, 20)]
