"""A served model's life: built (its batcher and its slots: an executor thread in this process, or a pool
of worker processes), warmed up, started, swapped for another artifact while serving, retired (its
in-flight requests finished, its queue drained, then its executors and workers closed).

Hot swap (`swap_model`, `ReccApp.swap`, `POST /v2/repository/models/{name}/load`): the new artifact is
loaded (`recc.load`: hashes, CPU features, TVM version), its signature compared with the served one, its
slots started (new worker processes for a pooled model) and warmed up, all while the old model keeps
serving; then the model's entry is replaced in one step on the event loop, so every request read after
that goes to the new model. A request holds the entry it was dispatched to (`Served.active`) from the
moment its body has been read until its outputs are back, so requests already dispatched to the old
model finish on it; the old entry is retired only when none holds it and its batcher has drained. Nothing
accepted is dropped. If the new artifact fails to load, the old model keeps serving, untouched.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from recc.compiler.artifact import MANIFEST, ArtifactError
from recc.compiler.artifact import dim_to_json as _dim
from recc.runtime.batcher import Batcher, model_call
from recc.runtime.compiled_model import CompiledModel, load
from recc.runtime.handler import ReccApp, ServeConfig, Served, unknown_model
from recc.runtime.metrics import ServerMetrics
from recc.runtime.pool import start_workers
from recc.runtime.router import Router, check_same_signature
from recc.runtime.protocol import batch_layout, model_metadata
from recc.runtime.synthetic import SyntheticInputError, synthetic_inputs


class SwapError(ValueError):
    """A swap that was not made (the old model still serves); `status` is the HTTP answer: 400 the artifact
    does not load (the ArtifactError's message), 404 unknown model, 409 incompatible signature."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- building, starting, retiring -------------------------------------------------------------------------
def build_entry(name: str, model: CompiledModel, config: ServeConfig, metrics: ServerMetrics, version: int = 1,
                signature_changed: bool = False) -> Served:
    """A model's entry: its batcher on its slots (started worker processes, for a pool). Blocks for seconds
    with workers: call it off the event loop when serving."""
    own = config.for_model(name)
    slots, close = _slots(name, model, own, metrics)
    batcher: Any = _batcher(name, model, slots, own, metrics)
    if own.variant:  # requests over variant_threshold rows go to a second artifact (recc.runtime.router)
        large_model = load(own.variant)
        check_same_signature(model, large_model)
        large_slots, close_large = _slots(f"{name}@large", large_model, own, metrics)
        large = _batcher(f"{name}@large", large_model, large_slots, own, metrics)
        batcher, close = Router(batcher, large, own.variant_threshold), _both(close, close_large)
    metadata = served_metadata(name, model, version, signature_changed)
    return Served(name, model, metadata, batcher, close, metrics.latency.labels(name), version=version)


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


def served_metadata(name: str, model: CompiledModel, version: int, signature_changed: bool = False) -> dict[str, Any]:
    """`model_metadata` plus which artifact serves: `versions` (KServe's field: the swap count, from 1),
    `parameters.version`, `parameters.artifact_digest` (its manifest's digest: the sha256 that covers every
    file's hash) and, after a swap to a different signature, `parameters.signature_changed`."""
    meta = model_metadata(name, model)
    meta["versions"] = [str(version)]
    meta["parameters"].update(version=version, artifact_digest=artifact_digest(model))
    if signature_changed:
        meta["parameters"]["signature_changed"] = True
    return meta


def artifact_digest(model: CompiledModel) -> str | None:
    try:
        return json.loads((model.path / MANIFEST).read_text()).get("digest")
    except (OSError, ValueError):
        return None


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


async def start(entry: Served, config: ServeConfig) -> None:
    """Warm the entry up (seeding admission's cost model) and start its batcher; on the event loop."""
    if config.warm_up:
        await asyncio.to_thread(_warm_up, entry)
        if not config.for_model(entry.name).workers:
            _warm_up_here(entry)
    entry.batcher.start()


async def retire(entry: Served) -> None:
    """Let every request holding the entry finish, drain its batcher, then close its executors and workers."""
    while entry.active:
        await asyncio.sleep(0.001)
    await entry.batcher.drain()
    await asyncio.to_thread(entry.close)


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


# -- hot swap ---------------------------------------------------------------------------------------------
def signature_changes(old: Any, new: Any) -> list[str]:
    """How `new`'s inputs and outputs differ from `old`'s (names in order, dtypes, dims: static sizes and
    symbolic forms); empty when a request valid for the old model has the same form for the new one.
    Embedding-table sizes (id limits) may differ: the metadata publishes the new ones."""
    def form(specs: Any) -> list[tuple[str, str, list[Any]]]:
        return [(s.name, s.dtype, [_dim(d) for d in s.shape]) for s in specs]

    changes = []
    for what in ("inputs", "outputs"):
        before, after = form(getattr(old.manifest, what)), form(getattr(new.manifest, what))
        if [n for n, _, _ in before] != [n for n, _, _ in after]:
            changes.append(f"{what} {[n for n, _, _ in before]} -> {[n for n, _, _ in after]}")
            continue
        changes += [f"{what[:-1]} {b[0]!r}: {b[1]}{b[2]} -> {a[1]}{a[2]}" for b, a in zip(before, after) if b != a]
    return changes


async def swap_model(app: ReccApp, name: str, path: str, allow_signature_change: bool = False) -> dict[str, Any]:
    """Serve the artifact at `path` as `name` in place of the current one, on the app's event loop (module
    docstring); what was swapped: {"name", "version", "artifact_digest", "previous_digest", "signature_changes",
    "seconds"}. Raises `SwapError` (the old model still serves); swaps of one model run one at a time."""
    if name not in app.served:
        raise SwapError(404, unknown_model(name, app.served)["error"])
    if not isinstance(path, str) or not path:
        raise SwapError(400, 'the artifact path must be a non-empty string: {"parameters": {"path": "..."}}')
    lock = app.swap_locks.setdefault(name, asyncio.Lock())
    failed = app.metrics.swaps.labels(name, "failed")
    async with lock:
        began = asyncio.get_running_loop().time()
        old = app.served[name]
        try:
            model = await asyncio.to_thread(load, path)
        except (ArtifactError, OSError) as e:
            failed.inc()
            raise SwapError(400, f"cannot load {path!r}: {e}") from e
        changes = signature_changes(old.model, model)
        if changes and not allow_signature_change:
            failed.inc()
            raise SwapError(409, f"{path!r} has another signature than the served {name!r} ({'; '.join(changes)}); "
                                 "swap anyway with allow_signature_change")
        try:  # new worker processes (a pooled model), warm-up calls
            entry = await _started(name, model, app, old.version + 1, bool(changes))
        except BaseException:
            failed.inc()
            raise
        app.served[name] = entry  # one step on the event loop: requests read from now on go to the new model
        await retire(old)
        app.metrics.swaps.labels(name, "done").inc()
    return {"name": name, "version": entry.version, "artifact_digest": entry.metadata["parameters"]["artifact_digest"],
            "previous_digest": old.metadata["parameters"]["artifact_digest"], "signature_changes": changes,
            "seconds": asyncio.get_running_loop().time() - began}


async def _started(name: str, model: CompiledModel, app: ReccApp, version: int, signature_changed: bool) -> Served:
    entry = await asyncio.to_thread(build_entry, name, model, app.config, app.metrics, version, signature_changed)
    try:
        await start(entry, app.config)
    except BaseException:
        await asyncio.to_thread(entry.close)
        raise
    return entry
