"""Scale-out on Ray Serve: recc artifacts as Ray Serve deployments (the `ray` extra: pip install 'recc[ray]').

Each artifact is an application of its own at the route prefix /v2/models/{name}: a deployment whose
replicas (Ray actors, one process each) load the artifact with `recc.load` (TVM threads = the replica's
CPUs; weights memory-mapped, so replicas on one node share them through the page cache) and answer the
KServe v2 protocol exactly as `recc serve` does: the same decoding, validation and error messages
(`binary.decode_request`, `CompiledModel.validate`), the same encoding (`binary.encode_response`).
Concurrent infer requests reaching a replica are batched with `@serve.batch`, then concatenated along the
batch axis into model calls of at most `max_rows` rows (`batcher.run_together`); a model without a batch
layout, or a request bigger than `max_rows`, runs alone. An index application at /v2 answers health,
server metadata and unknown models. Replicas are fixed (`num_replicas`) or autoscaled on ongoing requests
per replica (Ray Serve's `autoscaling_config` with `target_ongoing_requests`).

Each infer response carries `x-recc-replica` (the replica that ran it) and `x-recc-batch-requests` (how
many requests its `@serve.batch` batch held). What `recc serve` has and this does not: admission control
(429), the direct path for idle models, recc's Prometheus metrics (Ray Serve exports its own), a body size
limit. docs/serving.md, "Scale-out on Ray Serve".
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from recc.runtime.batcher import Outcome, model_call, run_together
from recc.runtime.binary import HEADER, decode_request, encode_response
from recc.runtime.compiled_model import load
from recc.runtime.handler import DECODE_INLINE_BYTES, infer_target, unknown_model
from recc.runtime.protocol import batch_layout, dumps, model_metadata, named_artifacts, server_metadata
from recc.runtime.synthetic import SyntheticInputError, synthetic_inputs

INDEX_APP = "recc-v2"  # the application answering /v2 (health, server metadata, unknown models)
Call = tuple[list[torch.Tensor], int]  # a validated request: its tensors and rows


@dataclass(frozen=True)
class ScaleOptions:
    """How a model's deployment scales and batches.

    num_replicas: fixed replicas (ignored with `autoscaling`). autoscaling: (min, max) replicas, or Ray
    Serve's whole `autoscaling_config` dict; replicas are added when the ongoing requests per replica
    exceed `target_ongoing_requests` (default: `max_batch_size`, a full batch waiting). max_batch_size:
    requests per `@serve.batch` batch; batch_wait_timeout_s: how long a batch waits to fill; max_rows:
    rows per model call (a batch is cut into calls). num_cpus: each replica's Ray CPUs; threads: its TVM
    threads (default: num_cpus, at least 1). max_ongoing_requests: per replica before Ray queues at the
    caller (default: 2 * max_batch_size, so a batch can fill while one runs). ray_actor_options: more of
    Ray's actor options (resources, runtime_env, ...)."""

    num_replicas: int = 1
    autoscaling: tuple[int, int] | dict[str, Any] | None = None
    target_ongoing_requests: float | None = None
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.002
    max_rows: int = 256
    num_cpus: float = 1.0
    threads: int | None = None
    max_ongoing_requests: int | None = None
    ray_actor_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("num_replicas", "max_batch_size", "max_rows"):
            if getattr(self, what) < 1:
                raise ValueError(f"{what} must be >= 1, got {getattr(self, what)}")
        if isinstance(self.autoscaling, tuple) and not 0 <= self.autoscaling[0] <= self.autoscaling[1]:
            raise ValueError(f"autoscaling (min, max) replicas need 0 <= min <= max, got {self.autoscaling}")

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve's `Deployment.options(...)` for these settings."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests or 2 * self.max_batch_size,
            "ray_actor_options": {"num_cpus": self.num_cpus, **self.ray_actor_options}}
        if self.autoscaling is None:
            options["num_replicas"] = self.num_replicas
            return options
        config = dict(self.autoscaling) if isinstance(self.autoscaling, dict) else \
            {"min_replicas": self.autoscaling[0], "max_replicas": self.autoscaling[1]}
        config.setdefault("target_ongoing_requests", self.target_ongoing_requests or self.max_batch_size)
        options["autoscaling_config"] = config
        return options

    def replica_threads(self) -> int:
        return self.threads or max(1, int(self.num_cpus))


def deployment(artifact: str | Path, name: str | None = None, **options: Any) -> Any:
    """A Ray Serve application serving `artifact` as `name` (default: its directory name without .recc),
    bound and ready for `serve.run(app, route_prefix=f"/v2/models/{name}")`; `options`: `ScaleOptions`'
    fields. The path is resolved here: every node that runs a replica must see the artifact at it."""
    scale = ScaleOptions(**options)
    path = Path(artifact).resolve()
    name = name or path.name.removesuffix(".recc")
    return ReccReplica.options(name=name, **scale.deployment_options()).bind(
        str(path), name, scale.replica_threads(), scale.max_batch_size, scale.batch_wait_timeout_s, scale.max_rows)


def run(artifacts: list[str], host: str = "127.0.0.1", port: int = 8000, address: str | None = "local",
        **options: Any) -> str:
    """Deploy each artifact (`PATH`, or `NAME=PATH`) at /v2/models/{name} and the index at /v2 on Ray Serve's
    HTTP proxy (host:port); return its URL once every replica is up. `address`: where Ray runs when this
    process has not called `ray.init` yet: "local" starts a Ray instance here, "auto" joins the cluster
    `ray start` made on this node, or any address `ray.init` takes. `options`: `ScaleOptions`' fields."""
    named = named_artifacts(artifacts)
    if INDEX_APP in named:
        raise ValueError(f"{INDEX_APP!r} is the name of recc's index application; serve the model under another name")
    apps = {name: deployment(path, name, **options) for name, path in named.items()}  # options checked first
    if not ray.is_initialized():
        ray.init(address=address)
    serve.start(http_options={"host": host, "port": port})
    for name, app in apps.items():
        serve.run(app, name=name, route_prefix=f"/v2/models/{name}")
    serve.run(ReccIndex.bind(list(named)), name=INDEX_APP, route_prefix="/v2")
    return f"http://{host}:{port}"


def serve_until_stopped(artifacts: list[str], host: str, port: int, address: str, **options: Any) -> None:
    """`recc serve-ray`: `run`, then wait for SIGINT/SIGTERM and delete the applications (and stop Serve and
    Ray when they were started here, address "local")."""
    url = run(artifacts, host=host, port=port, address=address, **options)
    names = list(named_artifacts(artifacts))
    print(f"recc: serving {', '.join(names)} on Ray Serve at {url}/v2/models/{{name}}/infer (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for name in [*names, INDEX_APP]:
            serve.delete(name)
        if address == "local":
            serve.shutdown()
            ray.shutdown()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(content), status_code=status, media_type="application/json", headers=headers)


def v2_route(path: str, names: list[str], metadata: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(status, JSON content) for a GET of the protocol's other routes: health, server metadata, a model's
    metadata and readiness (`metadata`: the one model this replica serves), unknown models."""
    if path in ("/v2/health/live", "/v2/health/ready"):
        return 200, {path.rsplit("/", 1)[1]: True}
    if path in ("/v2", "/v2/"):
        return 200, server_metadata(names)
    name, _, rest = path.removeprefix("/v2/models/").partition("/")
    if not path.startswith("/v2/models/") or rest not in ("", "ready", "infer"):
        return 404, {"error": f"no route {path}"}
    if metadata is None or name != metadata["name"]:
        return 404, unknown_model(name, names)  # type: ignore[arg-type]  # it lists the names it is given
    return 200, metadata if rest == "" else {"name": name, "ready": True}


def batch_calls(requests: list[Call], max_rows: int, batched: bool) -> list[list[Call]]:
    """Consecutive requests grouped into model calls of at most `max_rows` rows (a bigger request alone);
    `batched` False: one request per call."""
    calls: list[list[Call]] = []
    rows = 0
    for request in requests:
        if calls and batched and rows + request[1] <= max_rows:
            calls[-1].append(request)
            rows += request[1]
        else:
            calls.append([request])
            rows = request[1]
    return calls


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ReccIndex:
    """/v2: health, server metadata (the models deployed with it) and 404 for unknown models."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    async def __call__(self, request: Request) -> Response:
        return _json(*v2_route(request.url.path, self.names))


@serve.deployment
class ReccReplica:
    """One replica of one model: the artifact loaded, one model call at a time on a thread of its own."""

    def __init__(self, path: str, name: str, threads: int, max_batch_size: int, batch_wait_timeout_s: float,
                 max_rows: int) -> None:
        self.model = load(path, threads=threads)
        self._call = model_call(self.model)
        self.name, self.layout, self.max_rows = name, batch_layout(self.model), max_rows
        self.metadata = model_metadata(name, self.model)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}")
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.infer_batch.set_max_batch_size(max_batch_size)
        self.infer_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.executor.submit(self._warm_up).result()  # the VM is made on the thread that runs the calls

    def _warm_up(self) -> None:
        try:
            arrays = synthetic_inputs(self.metadata, 1, np.random.default_rng(1))
        except SyntheticInputError:
            return  # the first request pays for it
        self.model(*[arrays[n] for n in self.model.input_names])

    async def __call__(self, request: Request) -> Response:
        path = request.url.path  # the whole path, the route prefix included
        if infer_target(path) != self.name:
            return _json(*v2_route(path, [self.name], self.metadata))
        if request.method != "POST":
            return _json(405, {"error": "use POST for infer"})
        body = await request.body()
        json_length = request.headers.get(HEADER)
        try:
            if len(body) > DECODE_INLINE_BYTES:
                parsed, tensors, rows = await asyncio.to_thread(decode_request, self.model, self.layout, body,
                                                                 json_length)
            else:
                parsed, tensors, rows = decode_request(self.model, self.layout, body, json_length)
            outcome, joined = await self.infer_batch((tensors, rows))
            if isinstance(outcome, Exception):
                raise outcome
        except ValueError as e:  # RequestError, and the model's own checks (the Python API's messages)
            return _json(400, {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - a model call failed on validated inputs: answer, stay up
            return _json(500, {"error": f"model {self.name!r} failed: {type(e).__name__}: {e}"})
        content, binary_from = encode_response(self.name, self.model, outcome, parsed)
        headers = {"x-recc-replica": self.replica, "x-recc-batch-requests": str(joined)}
        if binary_from is None:
            return Response(content, media_type="application/json", headers=headers)
        return Response(content, media_type="application/octet-stream", headers={**headers, HEADER: str(binary_from)})

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def infer_batch(self, requests: list[Call]) -> list[tuple[Outcome, int]]:
        """Each request's outcome and the number of requests in its batch (set from ScaleOptions at start)."""
        outcomes = await asyncio.get_running_loop().run_in_executor(self.executor, self._run, requests)
        return [(outcome, len(requests)) for outcome in outcomes]

    def _run(self, requests: list[Call]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for call in batch_calls(requests, self.max_rows, self.layout is not None):
            outcomes += run_together(self._call, self.layout, call)[0]
        return outcomes
