"""`recc loadgen`: an open-loop load generator for a KServe v2 server (`recc serve` or any other).

Arrivals are a Poisson process (exponential gaps, as floats) fixed in advance from the seed: a request is
sent at its scheduled time whether or not earlier ones have been answered, and its latency is measured
from that scheduled time, so time spent waiting behind a slow server (or a slow client) is counted
(no coordinated omission). The rate may change in steps (`phases`: an overload burst, say). Each query
has a size (items = rows, `query_sizes`) and seeded random valid inputs made from the model's metadata
(`synthetic`): ids within the limits the server publishes.

Bodies are cheap to make at send time: a pool of rows is generated and serialized once, row by row, and
a query of n rows joins n consecutive serialized rows from a random start (wrapping around).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from recc.runtime.query_sizes import parse_sizes
from recc.runtime.synthetic import SyntheticInputError, input_shape, synthetic_inputs


@dataclass(frozen=True)
class LoadConfig:
    url: str
    model: str
    qps: float = 200.0
    duration_s: float = 10.0
    sizes: str = "fixed:64"
    seed: int = 0
    max_requests: int | None = None  # also bounded by count
    sla_ms: float | None = None  # sent as the request parameter sla_ms; None: the server's default
    timeout_s: float = 30.0
    connections: int = 1000
    binary: bool = False  # the binary tensor extension for inputs and outputs, instead of JSON tensors
    phases: tuple[tuple[float, float], ...] = ()  # (qps, seconds) pieces in order, instead of qps/duration_s
    record_requests: bool = False  # the results keep every request: [scheduled s, latency ms, status, rows]
    trace: str | None = None  # replay recorded arrivals (read_trace) instead of drawing them

    @property
    def total_s(self) -> float:
        """Seconds of arrivals: the trace's span, the phases' total, else duration_s."""
        if self.trace:
            return max(float(read_trace(self.trace)[0][-1]), 1e-9)
        return sum(seconds for _, seconds in self.phases) if self.phases else self.duration_s


@dataclass(frozen=True)
class Outcome:
    rows: int
    scheduled: float
    done: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str | None


class RequestBodies:
    """Infer request bodies of any number of rows, joined from rows serialized once."""

    def __init__(self, metadata: dict[str, Any], pool_rows: int, rng: np.random.Generator,
                 sla_ms: float | None = None, binary: bool = False) -> None:
        self.metadata, self.batch = metadata, metadata.get("parameters", {}).get("batch_symbol")
        self.pool_rows = pool_rows if self.batch else 1
        arrays = synthetic_inputs(metadata, self.pool_rows, rng)
        self._binary = _BinaryRows(metadata, arrays, self.batch, sla_ms) if binary else None
        self._rows: dict[str, list[str]] = {}
        for spec in metadata["inputs"]:
            dims, array = spec["parameters"]["dims"], arrays[spec["name"]]
            batched = [i for i, d in enumerate(dims) if not isinstance(d, int)]
            if batched and batched != [0]:
                raise SyntheticInputError(f"input {spec['name']!r}: the load generator needs the batch as dim 0")
            rows = array.reshape(self.pool_rows if batched else 1, -1)
            serialized = [json.dumps(r.tolist())[1:-1] for r in rows]
            self._rows[spec["name"]] = serialized * 2 if batched else serialized
        self._tail = "]," + json.dumps({"parameters": {"sla_ms": sla_ms}})[1:] if sla_ms else "]}"

    def request(self, rows: int, start: int) -> tuple[bytes, dict[str, str]]:
        """(body, headers) of a query of `rows` rows starting at pool row `start`."""
        if self._binary is not None:
            return self._binary.request(rows, start)
        return self.body(rows, start), _JSON_HEADERS

    def body(self, rows: int, start: int) -> bytes:
        parts = []
        for spec in self.metadata["inputs"]:
            serialized = self._rows[spec["name"]]
            data = serialized[0] if len(serialized) == 1 else ",".join(serialized[start:start + rows])
            shape = input_shape(spec, self.batch, rows)
            parts.append(f'{{"name":{json.dumps(spec["name"])},"datatype":"{spec["datatype"]}",'
                         f'"shape":{json.dumps(shape)},"data":[{data}]}}')
        return ('{"inputs":[' + ",".join(parts) + self._tail).encode()


_JSON_HEADERS = {"content-type": "application/json"}


class _BinaryRows:
    """Binary request bodies: each input's pool rows as raw bytes (twice, for wrap-around), sliced per query."""

    def __init__(self, metadata: dict[str, Any], arrays: dict[str, np.ndarray], batch: str | None,
                 sla_ms: float | None) -> None:
        from recc.runtime.binary import wire_bytes

        self.metadata, self.batch, self._sla_ms = metadata, batch, sla_ms
        self._raw: dict[str, tuple[bytes, int]] = {}  # name -> (bytes, bytes per row; 0: not batched)
        for spec in metadata["inputs"]:
            array = arrays[spec["name"]]
            batched = any(not isinstance(d, int) for d in spec["parameters"]["dims"])
            data = wire_bytes(np.concatenate([array, array]) if batched else array, spec["datatype"])
            self._raw[spec["name"]] = (data, len(data) // (2 * len(array)) if batched else 0)

    def request(self, rows: int, start: int) -> tuple[bytes, dict[str, str]]:
        inputs, blobs = [], []
        for spec in self.metadata["inputs"]:
            data, per_row = self._raw[spec["name"]]
            blob = data[start * per_row:(start + rows) * per_row] if per_row else data
            inputs.append({"name": spec["name"], "datatype": spec["datatype"],
                           "shape": input_shape(spec, self.batch, rows), "parameters": {"binary_data_size": len(blob)}})
            blobs.append(blob)
        params = {"binary_data_output": True, **({"sla_ms": self._sla_ms} if self._sla_ms else {})}
        head = json.dumps({"inputs": inputs, "parameters": params}).encode()
        return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                        "inference-header-content-length": str(len(head))}


def read_trace(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A recorded trace: one query per line, `SECONDS [ITEMS]` (its arrival from the start, non-decreasing;
    its size, else drawn from the configured sizes for every query); `#` starts a comment. (offsets, sizes
    or None)."""
    offsets, sizes = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            offsets.append(float(fields[0]))
            sizes.append(int(fields[1]) if len(fields) > 1 else None)
            bad = len(fields) > 2 or offsets[-1] < 0 or (sizes[-1] is not None and sizes[-1] < 1) \
                or (len(offsets) > 1 and offsets[-1] < offsets[-2])
        except ValueError:
            bad = True
        if bad:
            raise ValueError(f"{path}:{number}: expected 'SECONDS [ITEMS]' (seconds >= 0 and non-decreasing, items >= 1), "
                             f"got {line.strip()!r}")
    if not offsets:
        raise ValueError(f"{path}: no queries in the trace")
    if any(n is None for n in sizes) and any(n is not None for n in sizes):
        raise ValueError(f"{path}: give ITEMS on every line or on none")
    return np.asarray(offsets), (None if sizes[0] is None else np.asarray(sizes, np.int64))


def plan_arrivals(config: LoadConfig, rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets in seconds: Poisson at `qps` within `duration_s` (or piecewise Poisson, one rate per
    phase, one phase after the other), at most `max_requests`."""
    if not config.phases:
        return poisson_offsets(config.qps, config.duration_s, config.max_requests, rng)
    pieces, start = [], 0.0
    for qps, seconds in config.phases:
        pieces.append(start + poisson_offsets(qps, seconds, None, rng))
        start += seconds
    offsets = np.concatenate(pieces)
    return offsets[:config.max_requests] if config.max_requests is not None else offsets


def poisson_offsets(qps: float, duration_s: float, max_requests: int | None, rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets in seconds of a Poisson process at `qps` within `duration_s`, at most `max_requests`."""
    if qps <= 0 or duration_s <= 0:
        raise ValueError("--qps and --duration must be positive")
    expected = int(qps * duration_s * 1.2 + 20)
    offsets = np.cumsum(rng.exponential(1.0 / qps, expected))
    while offsets[-1] < duration_s:  # rare: the draw ran short
        offsets = np.concatenate([offsets, offsets[-1] + np.cumsum(rng.exponential(1.0 / qps, expected))])
    offsets = offsets[offsets < duration_s]
    return offsets[:max_requests] if max_requests is not None else offsets


async def _one(client: httpx.AsyncClient, path: str, request: tuple[bytes, dict[str, str]], scheduled: float,
               rows: int) -> Outcome:
    loop = asyncio.get_running_loop()
    try:
        response = await client.post(path, content=request[0], headers=request[1])
        status = response.status_code
        error = None if status == 200 else response.text[:500]
    except httpx.HTTPError as e:
        status, error = None, f"{type(e).__name__}: {e}"
    return Outcome(rows, scheduled, loop.time(), status, error)


async def _drive(config: LoadConfig) -> tuple[float, list[Outcome]]:
    limits = httpx.Limits(max_connections=config.connections, max_keepalive_connections=config.connections)
    async with httpx.AsyncClient(base_url=config.url, timeout=config.timeout_s, limits=limits) as client:
        response = await client.get(f"/v2/models/{config.model}")
        if response.status_code != 200:
            raise ValueError(f"{config.url}: model {config.model!r}: HTTP {response.status_code} {response.text[:300]}")
        sizes = parse_sizes(config.sizes)
        rng = np.random.default_rng(config.seed)
        traced = read_trace(config.trace) if config.trace else None
        largest = max(sizes.largest, int(traced[1].max())) if traced and traced[1] is not None else sizes.largest
        bodies = RequestBodies(response.json(), largest, rng, config.sla_ms, config.binary)
        offsets = traced[0][:config.max_requests] if traced else plan_arrivals(config, rng)
        rows = sizes.sample(rng, len(offsets)) if bodies.batch else np.ones(len(offsets), np.int64)
        if traced and traced[1] is not None and bodies.batch:
            rows = traced[1][:len(offsets)]
        starts = rng.integers(0, bodies.pool_rows, len(offsets))
        path = f"/v2/models/{config.model}/infer"
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        tasks = []
        for offset, n, start in zip(offsets.tolist(), rows.tolist(), starts.tolist()):
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, path, bodies.request(n, start), t0 + offset, n)))
        return t0, list(await asyncio.gather(*tasks))


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def git_commit() -> dict[str, Any]:
    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip() or None if head.returncode == 0 else None,
            "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def summarize(config: LoadConfig, t0: float, outcomes: list[Outcome], command: list[str]) -> dict[str, Any]:
    """The results JSON (docs/serving.md explains each field); latencies in ms from scheduled arrival."""
    ok = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 429]
    failed = [o for o in outcomes if o.status not in (200, 429)]
    elapsed = max((o.done for o in outcomes), default=t0) - t0
    examples: dict[str, str] = {}
    for o in failed + refused:
        examples.setdefault(str(o.status), o.error or "")
    return {
        "command": command, "git": git_commit(), "config": asdict(config),
        "sent": len(outcomes), "completed": len(ok), "refused": len(refused), "errors": len(failed),
        "error_examples": examples, "elapsed_s": elapsed,
        "offered_qps": len(outcomes) / config.total_s,
        "achieved_qps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "items_per_s": sum(o.rows for o in ok) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles([(o.done - o.scheduled) * 1e3 for o in ok]),
        "refused_latency_ms": percentiles([(o.done - o.scheduled) * 1e3 for o in refused]),
        "items_per_query": percentiles([float(o.rows) for o in outcomes]),
        **({"requests": [[round(o.scheduled - t0, 6), round((o.done - o.scheduled) * 1e3, 3), o.status, o.rows]
                         for o in outcomes]} if config.record_requests else {}),
    }


def run_load(config: LoadConfig, command: list[str] | None = None) -> dict[str, Any]:
    """Run the load and return the results (blocking; uses an event loop of its own)."""
    t0, outcomes = asyncio.run(_drive(config))
    return summarize(config, t0, outcomes, command if command is not None else sys.argv)
