"""The infer request's hot path, as a plain ASGI app in front of FastAPI: `POST /v2/models/{name}/infer` is
read, decoded, admitted, run and answered here; everything else (health, metadata, metrics, the lifespan)
goes to the FastAPI app. uvicorn (httptools) still parses HTTP; this skips only FastAPI's routing, its
middleware stack and Starlette's Request/Response objects, which cost more than the rest of a batch-1
request's handling (bench/serving_overhead.py). The server module builds it (`server.create_app`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from recc.runtime.batcher import Batcher, Refused
from recc.runtime.binary import decode_request, encode_response
from recc.runtime.metrics import ServerMetrics
from recc.runtime.protocol import RequestError, dumps

DECODE_INLINE_BYTES = 64 << 10  # bigger bodies are parsed on a worker thread, off the event loop
_JSON = (b"content-type", b"application/json")
_BINARY = (b"content-type", b"application/octet-stream")


@dataclass(frozen=True)
class ServeConfig:
    """sla_ms: the default deadline per request (None: no admission control; a request may send its own
    `parameters.sla_ms`); max_batch: rows per batched call; max_delay_ms: how long the oldest queued
    request waits for others to join its batch; max_body_bytes: larger requests are refused (400);
    inline_max_ms: a request finding its model idle runs at once on the event loop when its call is
    predicted to take at most this long (0: never; always 0 with workers); workers: 0 runs calls in this
    process, N > 0 in a pool of N worker processes pinned to `worker_threads` cores each, requests over
    max_batch rows split across them when `split` (query splitting); variant: a second artifact of the same
    model (same inputs and outputs) that serves the requests of more than `variant_threshold` rows
    (`recc.runtime.router`)."""

    sla_ms: float | None = 10.0
    max_batch: int = 256
    max_delay_ms: float = 2.0
    max_body_bytes: int = 64 << 20
    warm_up: bool = True
    inline_max_ms: float = 1.0
    workers: int = 0  # 0: calls in this process; N: a pool of N worker processes (`recc.runtime.pool`)
    worker_threads: int = 1  # TVM threads (and pinned cores) per worker
    split: bool = True  # with workers: requests above max_batch rows are split across them
    variant: str | None = None  # another artifact of the model: requests over variant_threshold rows go to it
    variant_threshold: int = 256
    allow_swap: bool = False  # POST /v2/repository/models/{name}/load: clients may load artifacts from disk
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> settings above, for that model

    def for_model(self, name: str) -> ServeConfig:
        """This config with `per_model[name]`'s settings (a tuned serving config) in place."""
        return replace(self, **self.per_model[name]) if name in self.per_model else self


@dataclass
class Served:
    name: str
    model: Any
    metadata: dict[str, Any]
    batcher: Batcher
    close: Callable[[], None]  # stops its executors and worker processes
    latency: Any = None  # this model's recc_request_latency_seconds series
    version: int = 1  # 1 when served at start-up, then one more per hot swap
    active: int = 0  # requests dispatched to this entry and not answered yet (a swap retires it at 0)


class _Disconnected(Exception):
    """The client went away before its request was read."""


def unknown_model(name: str, served: dict[str, Served]) -> dict[str, str]:
    return {"error": f"unknown model {name!r}; this server serves {', '.join(map(repr, served))}"}


def infer_target(path: str) -> str | None:
    """The model name in /v2/models/{name}/infer, or None for any other path."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        name = path[len("/v2/models/"):-len("/infer")]
        return name if name and "/" not in name else None
    return None


class ReccApp:
    """The ASGI app `recc serve` runs: infer requests here, the rest to `fastapi` (its `state` is ours)."""

    def __init__(self, fastapi: Any, served: dict[str, Served], metrics: ServerMetrics, config: ServeConfig) -> None:
        self.fastapi, self.state = fastapi, fastapi.state
        self.served, self.metrics, self.config = served, metrics, config
        self._counters: dict[tuple[str, int], Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, set at start-up
        self.swap_locks: dict[str, asyncio.Lock] = {}

    def swap(self, name: str, path: str, allow_signature_change: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
        """Hot swap from another thread than the serving loop's: serve the artifact at `path` as `name`
        without dropping a request (`recc.runtime.lifecycle.swap_model`; raises its `SwapError`)."""
        if self.loop is None:
            raise RuntimeError("the server is not running: swap once it has started")
        if _running_loop() is self.loop:
            raise RuntimeError("on the serving loop, await app.swap_async(...) instead")
        return asyncio.run_coroutine_threadsafe(self.swap_async(name, path, allow_signature_change),
                                                self.loop).result(timeout_s)

    async def swap_async(self, name: str, path: str, allow_signature_change: bool = False) -> dict[str, Any]:
        """`swap`, on the serving loop."""
        from recc.runtime.lifecycle import swap_model  # it builds entries with this module's types

        return await swap_model(self, name, path, allow_signature_change)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = infer_target(scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.fastapi(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 405, dumps({"error": "use POST for infer"}), [_JSON])
            return
        try:
            status, body, headers = await self._infer(name, scope, receive)
        except _Disconnected:
            return
        await _answer(send, status, body, headers)

    def _count(self, name: str, status: int) -> None:
        counter = self._counters.get((name, status))
        if counter is None:
            counter = self._counters[(name, status)] = self.metrics.requests.labels(name, str(status))
        counter.inc()

    async def _infer(self, name: str, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, list[Any]]:
        arrived = time.perf_counter()
        if name not in self.served:
            self._count("", 404)
            return 404, dumps(unknown_model(name, self.served)), [_JSON]
        request = await _read(scope, receive, self.config.max_body_bytes)
        entry = self.served[name]  # looked up once the body is in: a hot swap may have replaced it meanwhile
        entry.active += 1  # held until answered: a swap retires the entry only when none holds it
        try:
            status, body, headers = await _handle(entry, scope, request, self.config, arrived)
        finally:
            entry.active -= 1
        if status == 429:
            self.metrics.refused.labels(name).inc()
        self._count(name, status)
        if status == 200:
            entry.latency.observe(time.perf_counter() - arrived)
        return status, body, headers


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _answer(send: Any, status: int, body: bytes, headers: list[Any]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read(scope: dict[str, Any], receive: Any, limit: int) -> bytes | RequestError:
    try:
        return await read_body(scope, receive, limit)
    except RequestError as e:  # answered 400 by _handle
        return e


async def _handle(entry: Served, scope: dict[str, Any], body: bytes | RequestError, config: ServeConfig,
                  arrived: float) -> tuple[int, bytes, list[Any]]:
    """(status, body, headers) for one infer request; never raises for a bad request. The deadline counts
    from the request's arrival: reading and decoding it spend part of it."""
    try:
        if isinstance(body, RequestError):
            raise body
        json_length = header(scope, b"inference-header-content-length")
        if len(body) > DECODE_INLINE_BYTES:
            parsed, tensors, rows = await asyncio.to_thread(decode_request, entry.model, entry.batcher.layout,
                                                             body, json_length)
        else:
            parsed, tensors, rows = decode_request(entry.model, entry.batcher.layout, body, json_length)
        deadline = _deadline_s(parsed, config)
        entry.batcher.admit(rows, deadline, spent_s=time.perf_counter() - arrived)
        outputs = entry.batcher.run_now(tensors, rows)
        if outputs is None:
            outputs = await entry.batcher.submit(tensors, rows)
    except Refused as e:
        return 429, dumps({"error": str(e)}), [_JSON]
    except ValueError as e:  # RequestError, and the model's own checks (the Python API's messages)
        return 400, dumps({"error": str(e)}), [_JSON]
    except Exception as e:  # noqa: BLE001 - a model call failed on validated inputs: answer, stay up
        return 500, dumps({"error": f"model {entry.name!r} failed: {type(e).__name__}: {e}"}), [_JSON]
    response, binary_from = encode_response(entry.name, entry.model, outputs, parsed)
    if binary_from is None:
        return 200, response, [_JSON]
    return 200, response, [_BINARY, (b"inference-header-content-length", str(binary_from).encode())]


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    declared = header(scope, b"content-length") or ""
    too_big = f"request body over the limit of {limit} bytes (recc serve --max-body-mb)"
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(too_big)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(too_big)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _deadline_s(parsed: dict[str, Any], config: ServeConfig) -> float | None:
    params = parsed.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError('"parameters" must be an object')
    sla = params.get("sla_ms", config.sla_ms)
    if sla is not None and (isinstance(sla, bool) or not isinstance(sla, (int, float)) or not sla > 0):
        raise RequestError(f"parameters.sla_ms must be a positive number of milliseconds, got {sla!r}")
    return sla / 1e3 if sla else None
