"""Open-loop load driven in this process, straight into a batcher (no HTTP): what `recc tune-serving` and
the latency-bounded throughput benchmark measure with.

Arrivals are a Poisson process fixed in advance by the seed; each query is submitted at its scheduled time
whatever happened to earlier ones, and its latency runs from that scheduled time to its last part's
outputs (no coordinated omission, as `recc loadgen`). Query inputs are seeded random valid inputs made
once (`synthetic`) and validated once; a query of n rows is a slice of them, so the measurement is the
serving path (queueing, batching, splitting, the workers), not input generation or HTTP.

`Deployment` is one way of serving a model: the slots (in this process, or a pool of workers), whether
requests are coalesced into batches (`coalesce`, needs a batch layout) and split (`split`), and
`max_batch`. `measure(...)` runs one load against it and returns latency percentiles and throughput.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recc.runtime.batcher import Batcher, model_call
from recc.runtime.loadgen import percentiles, poisson_offsets
from recc.runtime.metrics import ServerMetrics
from recc.runtime.pool import Worker, start_workers
from recc.runtime.protocol import BatchLayout, batch_layout, model_metadata
from recc.runtime.query_sizes import QuerySizes
from recc.runtime.synthetic import synthetic_inputs


@dataclass
class Deployment:
    """How a model is served: `slots` for the batcher, and the batching policy."""

    name: str
    model: Any  # the CompiledModel in this process: validation, metadata, the batch layout
    slots: list[tuple[Any, Any]]
    max_batch: int = 256
    coalesce: bool = True  # several requests in one call (else one request = one call: static batching)
    split: bool = False  # requests over max_batch cut into parts across the slots
    max_delay_s: float = 0.0
    workers: list[Worker] = field(default_factory=list)

    @property
    def layout(self) -> BatchLayout | None:
        return batch_layout(self.model)

    def batcher(self) -> Batcher:
        layout = self.layout if self.coalesce or self.split else None
        return Batcher(self.name, self.model, layout, self.slots, ServerMetrics(), max_batch=self.max_batch,
                       max_delay_s=self.max_delay_s, split=self.split)

    def close(self) -> None:
        for executor, _ in self.slots:
            executor.shutdown()
        for worker in self.workers:
            worker.close()


class Routed(Deployment):
    """Two deployments of one model behind a `Router`: requests over `threshold` rows to `large`."""

    def __init__(self, small: Deployment, large: Deployment, threshold: int) -> None:
        super().__init__(small.name, small.model, small.slots + large.slots, small.max_batch)
        self.small, self.large, self.threshold = small, large, threshold

    def batcher(self) -> Any:
        from recc.runtime.router import Router

        return Router(self.small.batcher(), self.large.batcher(), self.threshold)

    def close(self) -> None:
        self.small.close()
        self.large.close()


def in_process(name: str, model: Any) -> Deployment:
    """The model called in this process (TVM's thread pool uses the cores), one call at a time."""
    executor = ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}")
    return Deployment(name, model, [(executor, model_call(model))])


def pooled(name: str, model: Any, runner: tuple[Any, ...], workers: int, threads: int = 1) -> Deployment:
    """`workers` worker processes running `runner` (an artifact, or an eager module for a baseline)."""
    started = start_workers(runner, workers, threads)
    slots = [(ThreadPoolExecutor(1, thread_name_prefix=f"recc-{name}-w{i}"), w) for i, w in enumerate(started)]
    return Deployment(name, model, slots, workers=started)


def artifact_deployment(name: str, artifact: str, workers: int, threads: int) -> Deployment:
    """An artifact served in this process with `threads` TVM threads (`workers` = 0), or by `workers`
    pinned worker processes of `threads` threads each."""
    from recc.runtime.compiled_model import load

    if workers == 0:
        return in_process(name, load(artifact, threads=threads))
    return pooled(name, load(artifact, threads=1), ("artifact", str(artifact)), workers, threads)


class QueryPool:
    """Validated inputs of `rows` rows, sliced into queries along the batch axes."""

    def __init__(self, model: Any, rows: int, seed: int = 0) -> None:
        layout = batch_layout(model)
        if layout is None:
            raise ValueError("driving queries of many sizes needs a model whose inputs and outputs share one "
                             "batch dim (docs/serving.md, Dynamic batching)")
        self.axes, self.rows = layout.input_axes, rows
        arrays = synthetic_inputs(model_metadata("model", model), rows, np.random.default_rng(seed))
        self.tensors, _ = model.validate(*[arrays[n] for n in model.input_names])

    def query(self, rows: int, start: int) -> list[torch.Tensor]:
        start = min(start, self.rows - rows)
        return [t.narrow(axis, start, rows) for t, axis in zip(self.tensors, self.axes)]


@dataclass(frozen=True)
class Load:
    qps: float
    sizes: QuerySizes
    duration_s: float = 3.0
    max_queries: int | None = None
    seed: int = 0


def warm(deployment: Deployment, pool: QueryPool) -> None:
    """One call on every slot (a worker's first call builds its VM), at a few sizes."""
    for executor, call in deployment.slots:
        for rows in (1, min(64, pool.rows)):
            executor.submit(call, *pool.query(rows, 0)).result()


def measure(deployment: Deployment, pool: QueryPool, load: Load) -> dict[str, Any]:
    """Run `load` against the deployment; latency percentiles (ms, from scheduled arrival) and rates."""
    rng = np.random.default_rng(load.seed)
    offsets = poisson_offsets(load.qps, load.duration_s, load.max_queries, rng)
    sizes = np.minimum(load.sizes.sample(rng, len(offsets)), pool.rows)
    starts = rng.integers(0, pool.rows, len(offsets))
    queries = [pool.query(int(n), int(s)) for n, s in zip(sizes, starts)]
    t0, done, errors = asyncio.run(_open_loop(deployment, queries, sizes.tolist(), offsets.tolist()))
    latencies = [(d - (t0 + o)) * 1e3 for d, o in zip(done, offsets.tolist()) if d is not None]
    elapsed = max((d for d in done if d is not None), default=t0) - t0
    return {"offered_qps": load.qps, "queries": len(offsets), "completed": len(latencies), "errors": errors,
            "achieved_qps": len(latencies) / elapsed if elapsed > 0 else 0.0,
            "items_per_s": float(sum(n for n, d in zip(sizes.tolist(), done) if d is not None) / elapsed) if elapsed > 0 else 0.0,
            "latency_ms": percentiles(latencies)}


async def _open_loop(deployment: Deployment, queries: list[list[torch.Tensor]], sizes: list[int],
                     offsets: list[float]) -> tuple[float, list[float | None], int]:
    batcher = deployment.batcher()
    batcher.start()
    done: list[float | None] = [None] * len(queries)
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        try:
            await batcher.submit(queries[i], sizes[i])
            done[i] = time.perf_counter()
        except Exception:  # noqa: BLE001 - counted; a tuning run is judged on completed queries
            errors += 1

    t0 = time.perf_counter() + 0.02
    tasks = []
    for i, offset in enumerate(offsets):
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    await batcher.drain()
    return t0, done, errors
