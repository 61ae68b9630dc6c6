"""`recc serve`: compiled artifacts behind HTTP, with the KServe v2 Open Inference Protocol (JSON tensors),
dynamic batching, admission control under a latency SLA and Prometheus metrics. FastAPI on uvicorn.

    GET  /v2/health/live, /v2/health/ready, /v2/models/{name}/ready
    GET  /v2, /v2/models/{name}             server and model metadata
    POST /v2/models/{name}/infer            {"inputs": [{name, shape, datatype, data}], "parameters": {"sla_ms": 5}}
    GET  /metrics                           Prometheus text format

Answers: 200; 400 {"error": ...} for a request the model refuses (the Python API's message) or the
protocol cannot decode; 404 for an unknown model; 429 when admission control predicts the deadline will
be missed; 500 if a model call fails on inputs that passed validation (a recc bug). docs/serving.md.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recc.runtime.batcher import Batcher, Refused
from recc.runtime.compiled_model import CompiledModel, load
from recc.runtime.metrics import ServerMetrics
from recc.runtime.protocol import (
    RequestError,
    batch_layout,
    decode_inputs,
    encode_outputs,
    model_metadata,
    parse_body,
)
from recc.runtime.synthetic import SyntheticInputError, synthetic_inputs

_DECODE_INLINE_BYTES = 64 << 10  # bigger bodies are parsed on a worker thread, off the event loop


@dataclass(frozen=True)
class ServeConfig:
    """sla_ms: the default deadline per request (None: no admission control; a request may send its own
    `parameters.sla_ms`); max_batch: rows per batched call; max_delay_ms: how long the oldest queued
    request waits for others to join its batch; max_body_bytes: larger requests are refused (400)."""

    sla_ms: float | None = 10.0
    max_batch: int = 256
    max_delay_ms: float = 2.0
    max_body_bytes: int = 64 << 20
    warm_up: bool = True


@dataclass
class _Served:
    name: str
    model: CompiledModel
    metadata: dict[str, Any]
    batcher: Batcher
    executor: ThreadPoolExecutor


def load_models(specs: list[str], threads: int | None = None) -> dict[str, CompiledModel]:
    """Artifacts by name: `PATH` is served as its directory name without `.recc`, `NAME=PATH` as NAME."""
    models: dict[str, CompiledModel] = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).name.removesuffix(".recc"), "", spec)
        if name in models:
            raise ValueError(f"two artifacts would both be served as {name!r}; name them: NAME=PATH")
        models[name] = load(path, threads=threads)
    return models


def create_app(models: dict[str, CompiledModel], config: ServeConfig = ServeConfig()) -> FastAPI:
    """The ASGI app serving `models` (each batched on a thread of its own); run it with uvicorn."""
    metrics = ServerMetrics()
    served: dict[str, _Served] = {}
    for name, model in models.items():
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}")
        batcher = Batcher(name, model, batch_layout(model), executor, metrics, max_batch=config.max_batch,
                          max_delay_s=config.max_delay_ms / 1e3)
        served[name] = _Served(name, model, model_metadata(name, model), batcher, executor)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for entry in served.values():
            if config.warm_up:
                await asyncio.to_thread(_warm_up, entry)
            entry.batcher.start()
        yield
        for entry in served.values():  # uvicorn has answered every open request by now; finish the queues
            await entry.batcher.drain()
            entry.executor.shutdown()

    app = FastAPI(title="recc", lifespan=lifespan)
    app.state.served, app.state.metrics, app.state.config = served, metrics, config
    _add_routes(app, served, metrics, config)
    return app


def _warm_up(entry: _Served) -> None:
    def make_inputs(rows: int) -> list[np.ndarray]:
        arrays = synthetic_inputs(entry.metadata, rows, np.random.default_rng(rows))
        return [arrays[n] for n in entry.model.input_names]

    try:
        make_inputs(1)
    except SyntheticInputError:
        return  # admission control starts measuring at the first request
    entry.batcher.warm_up(make_inputs, small=1, large=min(entry.batcher.max_batch, 64))


def _json(status: int, content: Any) -> Response:
    # NaN/inf in an output are written as JavaScript's literals (Python's json and most clients read them)
    return Response(json.dumps(content, separators=(",", ":")), status_code=status, media_type="application/json")


def _add_routes(app: FastAPI, served: dict[str, _Served], metrics: ServerMetrics, config: ServeConfig) -> None:
    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json(200, {"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json(200, {"ready": True})

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(200, {"name": "recc", "version": "0.1.0", "extensions": [], "models": list(served)})

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        return _json(200, served[name].metadata) if name in served else _unknown(name, served)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return _json(200, {"name": name, "ready": True}) if name in served else _unknown(name, served)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        arrived = time.perf_counter()
        entry = served.get(name)
        if entry is None:
            metrics.requests.labels("", "404").inc()
            return _unknown(name, served)
        status, content = await _infer(entry, request, config, metrics, arrived)
        metrics.requests.labels(name, str(status)).inc()
        if status == 200:
            metrics.latency.labels(name).observe(time.perf_counter() - arrived)
        return _json(status, content)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _unknown(name: str, served: dict[str, _Served]) -> Response:
    return _json(404, {"error": f"unknown model {name!r}; this server serves {', '.join(map(repr, served))}"})


async def _infer(entry: _Served, request: Request, config: ServeConfig, metrics: ServerMetrics,
                 arrived: float) -> tuple[int, Any]:
    """(status, JSON content) for one infer request; never raises for a bad request. The deadline counts
    from the request's arrival: reading and decoding it spend part of it."""
    try:
        body = await _read_body(request, config.max_body_bytes)
        if len(body) > _DECODE_INLINE_BYTES:
            parsed, tensors, rows = await asyncio.to_thread(_decode, entry, body)
        else:
            parsed, tensors, rows = _decode(entry, body)
        deadline = _deadline_s(parsed, config)
        entry.batcher.admit(rows, deadline, spent_s=time.perf_counter() - arrived)
        outputs = await entry.batcher.submit(tensors, rows)
    except Refused as e:
        metrics.refused.labels(entry.name).inc()
        return 429, {"error": str(e)}
    except ValueError as e:  # RequestError, and the model's own checks (the Python API's messages)
        return 400, {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - a model call failed on validated inputs: answer, stay up
        return 500, {"error": f"model {entry.name!r} failed: {type(e).__name__}: {e}"}
    response = encode_outputs(entry.name, entry.model, outputs)
    if "id" in parsed:
        response["id"] = parsed["id"]
    return 200, response


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = f"request body over the limit of {limit} bytes (recc serve --max-body-mb)"
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(entry: _Served, body: bytes) -> tuple[dict[str, Any], list[Any], int]:
    """The parsed request, its validated tensors and its rows (1 per call for a model without a batch layout)."""
    parsed = parse_body(body)
    tensors, dims = entry.model.validate(*decode_inputs(parsed, entry.model))
    layout = entry.batcher.layout
    return parsed, tensors, dims.get(layout.symbol, 1) if layout else 1


def _deadline_s(parsed: dict[str, Any], config: ServeConfig) -> float | None:
    params = parsed.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError('"parameters" must be an object')
    sla = params.get("sla_ms", config.sla_ms)
    if sla is not None and (isinstance(sla, bool) or not isinstance(sla, (int, float)) or not sla > 0):
        raise RequestError(f"parameters.sla_ms must be a positive number of milliseconds, got {sla!r}")
    return sla / 1e3 if sla else None


class ServerThread:
    """A uvicorn server on a background thread (tests, notebooks): `with ServerThread(app) as s: s.url`.
    Port 0 picks a free port; leaving the block shuts down gracefully (in-flight requests finish)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        self._thread = threading.Thread(target=self.server.run, name="recc-serve", daemon=True)
        self.host, self.port = host, port

    def __enter__(self) -> ServerThread:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start (see its log)")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self._thread.join()


def serve(artifacts: list[str], host: str = "127.0.0.1", port: int = 8000, config: ServeConfig = ServeConfig(),
          threads: int | None = None, log_level: str = "info") -> None:
    """Serve artifacts until SIGINT/SIGTERM; uvicorn's shutdown drains in-flight requests."""
    app = create_app(load_models(artifacts, threads=threads), config)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
