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
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recc.runtime.compiled_model import CompiledModel, load
from recc.runtime.handler import ReccApp, ServeConfig, Served, unknown_model
from recc.runtime.lifecycle import SwapError, build_entry, retire, start
from recc.runtime.metrics import ServerMetrics
from recc.runtime.protocol import dumps, named_artifacts, server_metadata

__all__ = ["ReccApp", "ServeConfig", "ServerThread", "create_app", "load_models", "serve"]


def load_models(specs: list[str], threads: int | None = None) -> dict[str, CompiledModel]:
    """Artifacts by name: `PATH` is served as its directory name without `.recc`, `NAME=PATH` as NAME."""
    return {name: load(path, threads=threads) for name, path in named_artifacts(specs).items()}


def create_app(models: dict[str, CompiledModel], config: ServeConfig = ServeConfig()) -> ReccApp:
    """The ASGI app serving `models` (each batched on a thread of its own); run it with uvicorn. Infer
    requests take the hot path of `handler.ReccApp`; the other routes are FastAPI's. `app.swap(name, path)`
    replaces a model's artifact while serving (`recc.runtime.lifecycle`)."""
    metrics = ServerMetrics()
    served = {name: build_entry(name, model, config, metrics) for name, model in models.items()}
    recc_app: ReccApp | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for entry in served.values():
            await start(entry, config)
        assert recc_app is not None
        recc_app.loop = asyncio.get_running_loop()
        yield
        for entry in served.values():  # uvicorn has answered every open request by now; finish the queues
            await retire(entry)

    app = FastAPI(title="recc", lifespan=lifespan)
    app.state.served, app.state.metrics, app.state.config = served, metrics, config
    recc_app = ReccApp(app, served, metrics, config)
    _add_routes(app, served, metrics)
    _add_repository_routes(app, recc_app)
    return recc_app


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


def _add_repository_routes(app: FastAPI, recc_app: ReccApp) -> None:
    """KServe v2's model repository extension, the load request only: a hot swap of a served model
    (`--allow-swap`; 403 without it: it lets any client make the server load files from its disk)."""

    @app.post("/v2/repository/models/{name}/load")
    async def load_model(name: str, request: Request) -> Response:
        if not recc_app.config.allow_swap:
            return _json(403, {"error": "loading models is disabled on this server (start it with --allow-swap, "
                                        "ServeConfig(allow_swap=True))"})
        try:
            body = await request.json()
        except ValueError as e:
            return _json(400, {"error": f"malformed JSON: {e}"})
        params = body.get("parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict) or not isinstance(params.get("path"), str):
            return _json(400, {"error": 'expected {"parameters": {"path": "ARTIFACT"}} (a path on the server)'})
        try:
            swapped = await recc_app.swap_async(name, params["path"], params.get("allow_signature_change") is True)
        except SwapError as e:
            return _json(e.status, {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - e.g. a worker process failed to start; the old model serves
            return _json(500, {"error": f"swapping {name!r} failed: {type(e).__name__}: {e}"})
        return _json(200, swapped)


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
