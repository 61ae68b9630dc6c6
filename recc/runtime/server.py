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
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recc.runtime.batcher import Batcher, model_call
from recc.runtime.compiled_model import CompiledModel, load
from recc.runtime.handler import ReccApp, ServeConfig, Served, unknown_model
from recc.runtime.metrics import ServerMetrics
from recc.runtime.pool import start_workers
from recc.runtime.router import Router, check_same_signature
from recc.runtime.protocol import batch_layout, dumps, model_metadata, named_artifacts, server_metadata
from recc.runtime.synthetic import SyntheticInputError, synthetic_inputs

__all__ = ["ReccApp", "ServeConfig", "ServerThread", "create_app", "load_models", "serve"]


def load_models(specs: list[str], threads: int | None = None) -> dict[str, CompiledModel]:
    """Artifacts by name: `PATH` is served as its directory name without `.recc`, `NAME=PATH` as NAME."""
    return {name: load(path, threads=threads) for name, path in named_artifacts(specs).items()}


def create_app(models: dict[str, CompiledModel], config: ServeConfig = ServeConfig()) -> ReccApp:
    """The ASGI app serving `models` (each batched on a thread of its own); run it with uvicorn. Infer
    requests take the hot path of `handler.ReccApp`; the other routes are FastAPI's."""
    metrics = ServerMetrics()
    served: dict[str, Served] = {}
    for name, model in models.items():
        own = config.for_model(name)
        slots, close = _slots(name, model, own, metrics)
        batcher: Any = _batcher(name, model, slots, own, metrics)
        if own.variant:
            large_model = load(own.variant)
            check_same_signature(model, large_model)
            large_slots, close_large = _slots(f"{name}@large", large_model, own, metrics)
            large = _batcher(f"{name}@large", large_model, large_slots, own, metrics)
            batcher, close = Router(batcher, large, own.variant_threshold), _both(close, close_large)
        served[name] = Served(name, model, model_metadata(name, model), batcher, close, metrics.latency.labels(name))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for entry in served.values():
            if config.warm_up:
                await asyncio.to_thread(_warm_up, entry)
                if not config.for_model(entry.name).workers:
                    _warm_up_here(entry)
            entry.batcher.start()
        yield
        for entry in served.values():  # uvicorn has answered every open request by now; finish the queues
            await entry.batcher.drain()
            entry.close()

    app = FastAPI(title="recc", lifespan=lifespan)
    app.state.served, app.state.metrics, app.state.config = served, metrics, config
    _add_routes(app, served, metrics)
    return ReccApp(app, served, metrics, config)


def _batcher(name: str, model: CompiledModel, slots: list[Any], config: ServeConfig, metrics: ServerMetrics) -> Batcher:
    pool = config.workers > 0
    return Batcher(name, model, batch_layout(model), slots, metrics, max_batch=config.max_batch,
                   max_delay_s=config.max_delay_ms / 1e3, inline_max_s=0.0 if pool else config.inline_max_ms / 1e3,
                   split=pool and config.split)


def _both(first: Any, second: Any) -> Any:
    def close() -> None:
        first()
        second()

    return close


def _slots(name: str, model: CompiledModel, config: ServeConfig, metrics: ServerMetrics) -> tuple[list[Any], Any]:
    """The batcher's slots for one model: the model in this process on one thread, or `config.workers`
    worker processes (each loads the artifact itself, memory-mapped), each driven by a thread; and what
    closes them."""
    if not config.workers:
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}")
        return [(executor, model_call(model))], executor.shutdown
    restarts = metrics.restarts.labels(name)
    workers = start_workers(("artifact", str(model.path)), config.workers, config.worker_threads,
                            on_restart=restarts.inc)
    executors = [ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}-w{i}") for i in range(len(workers))]

    def close() -> None:
        for executor, worker in zip(executors, workers):
            executor.shutdown()
            worker.close()

    return list(zip(executors, workers)), close


def _warm_up(entry: Served) -> None:
    def make_inputs(rows: int) -> list[np.ndarray]:
        arrays = synthetic_inputs(entry.metadata, rows, np.random.default_rng(rows))
        return [arrays[n] for n in entry.model.input_names]

    try:
        make_inputs(1)
    except SyntheticInputError:
        return  # admission control starts measuring at the first request
    entry.batcher.warm_up(make_inputs, small=1, large=min(entry.batcher.max_batch, 64))


def _warm_up_here(entry: Served) -> None:
    """One call on the event loop's thread, which runs idle requests directly: its VM is made now."""
    try:
        arrays = synthetic_inputs(entry.metadata, 1, np.random.default_rng(1))
    except SyntheticInputError:
        return
    entry.model(*[arrays[n] for n in entry.model.input_names])


def _json(status: int, content: Any) -> Response:
    return Response(dumps(content), status_code=status, media_type="application/json")


def _add_routes(app: FastAPI, served: dict[str, Served], metrics: ServerMetrics) -> None:
    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json(200, {"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json(200, {"ready": True})

    @app.get("/v2")
    async def v2_metadata() -> Response:
        return _json(200, server_metadata(list(served)))

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        return _json(200, served[name].metadata) if name in served else _unknown(name, served)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return _json(200, {"name": name, "ready": True}) if name in served else _unknown(name, served)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _unknown(name: str, served: dict[str, Served]) -> Response:
    return _json(404, unknown_model(name, served))


class ServerThread:
    """A uvicorn server on a background thread (tests, notebooks): `with ServerThread(app) as s: s.url`.
    Port 0 picks a free port; leaving the block shuts down gracefully (in-flight requests finish)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, http=http_protocol()))
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
          threads: int | None = None, log_level: str = "info", access_log: bool = False) -> None:
    """Serve artifacts until SIGINT/SIGTERM; uvicorn's shutdown drains in-flight requests. uvicorn takes
    uvloop and httptools when they are installed (the serve extra installs them). No access log unless
    asked: a line per request costs more than the rest of a small request's handling."""
    app = create_app(load_models(artifacts, threads=threads), config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, http=http_protocol())


def http_protocol() -> Any:
    """uvicorn's httptools protocol writing each response in one piece (`transport`), if httptools is
    installed; else uvicorn's choice."""
    try:
        from recc.runtime.transport import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol
