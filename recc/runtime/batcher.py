"""Dynamic batching and admission control for one served model.

Requests that passed validation wait in a queue. A batcher task takes the oldest, then waits at most
`max_delay_s` from that request's arrival for more, up to `max_batch` rows, concatenates them along the
batch axis (only for a model whose `BatchLayout` allows it; otherwise one request per call), runs one
model call on a free slot and splits the outputs back. A slot is an executor thread (a TVM call blocks,
the event loop must not) and what it calls: the model in this process (one slot: TVM's thread pool
already uses the cores), or a worker process of the pool (`recc.runtime.pool`: one slot per worker, as
many calls at once as workers).

Query splitting (`split=True`, with a pool): a request of more than `max_batch` rows is cut into parts of
at most `max_batch` rows that run on different slots at once; its outputs are joined back in order when
the last part is done (DeepRecSched's per-request batch size). Parts of several requests may share a
call. Without splitting, a request bigger than `max_batch` runs alone, whole.

Admission: a request with a deadline is refused at once (`Refused`, answered 429) when its predicted
completion misses it. A call of r rows is modelled as `seconds_per_call + r * seconds_per_row`, both
measured (start-up calls at two batch sizes, then exponentially weighted moving averages over the calls
served: big batches update the per-row time, small ones the per-call time). The prediction for a request
of r rows with R rows ahead of it (queued, plus the batch running) is
`ceil((R + r) / max_batch) * seconds_per_call + (R + r) * seconds_per_row` divided by the number of slots
(but at least its own parts' time: `ceil(parts / slots)` calls of `min(r, max_batch)` rows), plus the
batching delay when nothing runs and its batch would not fill. Before any measurement nothing is refused. A request admitted
is always run: nothing accepted is dropped.

Running directly: a request that finds the model idle (nothing queued, nothing running) and whose call is
predicted to take at most `inline_max_s` runs at once on the caller's thread (the event loop), without
the batching window or a hop to the executor thread: with nothing to batch it with, waiting only adds
latency. Requests arriving meanwhile wait in the socket, as they would wait for the executor.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recc.runtime.protocol import BatchLayout, output_arrays


class Refused(Exception):
    """Admission control refused a request: its predicted completion misses its deadline (HTTP 429)."""


@dataclass
class Pending:
    tensors: list[torch.Tensor]
    rows: int
    future: asyncio.Future[list[np.ndarray]] | None
    arrived: float = field(default_factory=time.perf_counter)
    taken: int = 0  # rows handed to calls so far (query splitting)
    done: int = 0  # rows whose outputs are back
    parts: list[tuple[int, list[np.ndarray]]] = field(default_factory=list)  # (first row, outputs)


@dataclass(frozen=True)
class Part:
    """Rows [start, start + rows) of a pending request, run in one call."""

    pending: Pending
    start: int
    rows: int

    def tensors(self, axes: tuple[int, ...] | None) -> list[torch.Tensor]:
        if axes is None or (self.start == 0 and self.rows == self.pending.rows):
            return self.pending.tensors
        return [t.narrow(axis, self.start, self.rows) for t, axis in zip(self.pending.tensors, axes)]


Call = Callable[..., list[np.ndarray]]  # a slot's callable: input tensors -> output arrays


class Batcher:
    """The queue and the batching loop of one model; `start()` on the event loop, `drain()` to stop.
    `slots`: (executor, call) pairs, one call at a time on each (module docstring)."""

    def __init__(self, name: str, model: Any, layout: BatchLayout | None, slots: list[tuple[Executor, Call]],
                 metrics: Any, max_batch: int = 256, max_delay_s: float = 0.002, ewma_weight: float = 0.2,
                 inline_max_s: float = 0.0, split: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not slots:
            raise ValueError("a batcher needs at least one slot")
        self.name, self.model, self.layout, self.slots = name, model, layout, slots
        self.max_batch, self.max_delay_s, self.inline_max_s = max_batch, max_delay_s, inline_max_s
        self.split = split and layout is not None
        self._weight = ewma_weight
        # this model's metric series, looked up once (a labels() lookup costs microseconds a request)
        self._queue_depth, self._direct = metrics.queue_depth.labels(name), metrics.direct.labels(name)
        self._batch_size, self._inference = metrics.batch_size.labels(name), metrics.inference.labels(name)
        self._queueing = metrics.queueing.labels(name)
        self.seconds_per_call: float = 0.0  # the cost model admission predicts with (module docstring)
        self.seconds_per_row: float | None = None
        self._waiting: deque[Pending] = deque()
        self._waiting_rows = 0
        self._running_rows = 0
        self._idle: deque[int] = deque(range(len(slots)))
        self._wakeup: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    # -- admission --------------------------------------------------------------------------------------
    def predicted_s(self, rows: int) -> float | None:
        """Seconds from now until a request of `rows` rows would complete, or None before any measurement."""
        if self.seconds_per_row is None:
            return None
        total = self._waiting_rows + self._running_rows + rows
        idle_wait = self.max_delay_s if self._running_rows == 0 and total < self.max_batch else 0.0
        calls = max(1, math.ceil(total / self.max_batch)) if self.layout is not None else total
        work = (calls * self.seconds_per_call + total * self.seconds_per_row) / len(self.slots)
        own_parts = math.ceil(rows / self.max_batch) if self.split else 1
        own_rows = min(rows, self.max_batch) if self.split else rows
        own = math.ceil(own_parts / len(self.slots)) * (self.seconds_per_call + own_rows * self.seconds_per_row)
        return idle_wait + max(work, own)

    def admit(self, rows: int, deadline_s: float | None, spent_s: float = 0.0) -> None:
        """Raise `Refused`, with the prediction spelled out, if a request that arrived `spent_s` ago
        cannot meet `deadline_s` (counted from its arrival)."""
        predicted = self.predicted_s(rows) if deadline_s is not None else None
        if predicted is not None and spent_s + predicted > deadline_s:
            ahead = self._waiting_rows + self._running_rows
            raise Refused(f"model {self.name!r} is overloaded: predicted completion {(spent_s + predicted) * 1e3:.3f} ms "
                          f"after arrival ({spent_s * 1e3:.3f} ms reading the request, {ahead} rows ahead + {rows} "
                          f"rows on {len(self.slots)} slot(s) at {self.seconds_per_call * 1e6:.0f} us per call + "
                          f"{self.seconds_per_row * 1e6:.1f} us per row) misses the deadline of {deadline_s * 1e3:g} "
                          "ms; retry later or with a longer deadline")

    # -- queueing ---------------------------------------------------------------------------------------
    async def submit(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray]:
        """Queue validated inputs of `rows` rows; their outputs once every call that holds them has run."""
        pending = Pending(tensors, rows, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._waiting_rows += rows
        self._queue_depth.set(len(self._waiting))
        assert self._wakeup is not None, "Batcher.start() was not called"
        self._wakeup.set()
        return await pending.future

    def run_now(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray] | None:
        """The outputs of a call made right here, if the model is idle and the call is predicted short
        (module docstring); None: queue it with `submit`. Only with one slot (the model in this process)."""
        if self._waiting or self._running_rows or self._task is None or self.seconds_per_row is None \
                or len(self.slots) != 1:
            return None
        if self.seconds_per_call + rows * self.seconds_per_row > self.inline_max_s:
            return None
        self._running_rows = rows
        pending = Pending(tensors, rows, None)
        try:
            (result,) = self._run(self.slots[0][1], [Part(pending, 0, rows)], rows)
        finally:
            self._running_rows = 0
        if isinstance(result, BaseException):
            raise result
        self._direct.inc()
        return result

    def start(self) -> None:
        self._wakeup, self._slot_free = asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def drain(self) -> None:
        """Finish every queued request, then stop (graceful shutdown)."""
        while self._waiting or self._running_rows or self._calls:
            await asyncio.sleep(0.001)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        assert self._slot_free is not None
        while True:
            while not self._idle:
                self._slot_free.clear()
                await self._slot_free.wait()
            parts = await self._take_parts()
            if not parts:
                continue
            slot = self._idle.popleft()
            rows = sum(p.rows for p in parts)
            self._running_rows += rows
            task = asyncio.get_running_loop().create_task(self._run_on(slot, parts, rows))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _run_on(self, slot: int, parts: list[Part], rows: int) -> None:
        assert self._slot_free is not None
        executor, call = self.slots[slot]
        started = time.perf_counter()
        for part in parts:
            if part.start == 0:
                self._queueing.observe(started - part.pending.arrived)
        try:
            results = await asyncio.get_running_loop().run_in_executor(executor, self._run, call, parts, rows)
        except BaseException as e:  # noqa: BLE001 - the executor itself failed: fail the parts, explicitly
            results = [e] * len(parts)
        finally:
            self._running_rows -= rows
            self._idle.append(slot)
            self._slot_free.set()
        for part, result in zip(parts, results):
            _deliver(part, result, self.layout)

    async def _take_parts(self) -> list[Part]:
        assert self._wakeup is not None
        while not self._waiting:
            self._wakeup.clear()
            await self._wakeup.wait()
        close_at = self._waiting[0].arrived + self.max_delay_s
        while self.layout is not None and self._waiting_rows < self.max_batch:
            left = close_at - time.perf_counter()
            if left <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                break
        return self._cut_parts()

    def _cut_parts(self) -> list[Part]:
        """The next call's parts, in arrival order: whole requests up to `max_batch` rows (the first one
        whole even if bigger), or with splitting, rows from the head up to `max_batch` exactly."""
        parts: list[Part] = []
        rows = 0
        while self._waiting and (not parts or (self.layout is not None and rows < self.max_batch)):
            head = self._waiting[0]
            left = head.rows - head.taken
            if head.future is not None and head.future.done():  # failed part or client gone: drop the rest
                self._waiting.popleft()
                self._waiting_rows -= left
                continue
            take = min(left, self.max_batch - rows) if self.split else left
            if parts and not self.split and rows + take > self.max_batch:
                break
            parts.append(Part(head, head.taken, take))
            head.taken += take
            rows += take
            if head.taken == head.rows:
                self._waiting.popleft()
        self._waiting_rows -= rows
        self._queue_depth.set(len(self._waiting))
        return parts

    # -- running (on the slot's executor thread) ------------------------------------------------------------
    def _run(self, call: Call, parts: list[Part], rows: int) -> list[list[np.ndarray] | BaseException]:
        axes = self.layout.input_axes if self.layout is not None else None
        start = time.perf_counter()
        results, joined = run_together(call, self.layout, [(p.tensors(axes), p.rows) for p in parts])
        if not joined:  # the call failed; each request got its own outcome alone: not a measurement
            return results
        elapsed = time.perf_counter() - start
        self._measured(elapsed, rows)
        self._batch_size.observe(rows)
        self._inference.observe(elapsed)
        return results

    def _measured(self, elapsed: float, rows: int) -> None:
        if self.seconds_per_row is None:  # no start-up measurement: all of it per row, for now
            self.seconds_per_row = elapsed / max(rows, 1)
            return
        w = self._weight
        if rows >= _ROWS_FOR_PER_ROW:
            sample = max(elapsed - self.seconds_per_call, 0.0) / rows
            self.seconds_per_row = w * sample + (1 - w) * self.seconds_per_row
        else:
            sample = max(elapsed - rows * self.seconds_per_row, 0.0)
            self.seconds_per_call = w * sample + (1 - w) * self.seconds_per_call

    def warm_up(self, make_inputs: Any, small: int = 1, large: int = 64, calls: int = 3) -> None:
        """Calls on the slots' threads (their VMs are made there, not in the first request's time) with
        `make_inputs(rows)` at two sizes, to seed the cost model. Not counted in the metrics."""
        def timed(call: Call, tensors: list[torch.Tensor]) -> float:
            start = time.perf_counter()
            call(*tensors)
            return time.perf_counter() - start

        def median_s(rows: int) -> float:
            tensors, _ = self.model.validate(*make_inputs(rows))
            for executor, call in self.slots[1:]:  # every slot once (a worker's first call is slow)
                executor.submit(timed, call, tensors).result()
            executor, call = self.slots[0]
            return float(np.median([executor.submit(timed, call, tensors).result() for _ in range(calls)]))

        t_small = median_s(small)
        if self.layout is None or large <= small:
            self.seconds_per_call, self.seconds_per_row = 0.0, t_small  # one request per call: its time
            return
        t_large = median_s(large)
        self.seconds_per_row = max((t_large - t_small) / (large - small), 1e-9)
        self.seconds_per_call = max(t_small - small * self.seconds_per_row, 0.0)


_ROWS_FOR_PER_ROW = 8  # a call of at least this many rows updates the per-row time, a smaller one the per-call


Outcome = list[np.ndarray] | Exception  # a request's outputs, or why its call failed


def run_together(call: Call, layout: BatchLayout | None,
                 requests: list[tuple[list[torch.Tensor], int]]) -> tuple[list[Outcome], bool]:
    """One call for validated `requests` (inputs, rows): concatenated along `layout`'s batch axes when
    there are several (their model must have a layout), the outputs split back per request. `call` maps
    input tensors to output arrays (`model_call(model)` for a model in this process, or a pool worker).
    If that call fails (validated inputs can still fail: an id the model computes), each request runs
    alone and gets its own outcome; the flag says whether the one call succeeded. Blocks: call it off the
    event loop."""
    try:
        if len(requests) == 1:
            return [call(*requests[0][0])], True
        return _run_concatenated(call, layout, requests), True
    except Exception as e:  # noqa: BLE001 - handed to the requests' callers
        if len(requests) == 1:
            return [e], False
        return [_run_alone(call, tensors) for tensors, _ in requests], False


def model_call(model: Any) -> Call:
    """A model in this process as a slot's call: input tensors -> output arrays."""
    return lambda *tensors: output_arrays(model(*tensors))


def _run_concatenated(call: Call, layout: BatchLayout | None,
                      requests: list[tuple[list[torch.Tensor], int]]) -> list[list[np.ndarray]]:
    assert layout is not None, "requests are concatenated only for a model with a batch layout"
    joined = [torch.cat([t[i] for t, _ in requests], dim=axis) for i, axis in enumerate(layout.input_axes)]
    outputs = call(*joined)
    cuts = np.cumsum([rows for _, rows in requests])[:-1]
    parts = [np.split(out, cuts, axis=axis) for out, axis in zip(outputs, layout.output_axes)]
    return [[part[i] for part in parts] for i in range(len(requests))]


def _run_alone(call: Call, tensors: list[torch.Tensor]) -> Outcome:
    try:
        return call(*tensors)
    except Exception as e:  # noqa: BLE001 - handed to that request's caller
        return e


def _deliver(part: Part, result: list[np.ndarray] | BaseException, layout: BatchLayout | None) -> None:
    """Hand a part's outcome to its request: an error at once, outputs once every part is back (joined
    in row order along the output axes)."""
    pending = part.pending
    if pending.future is None or pending.future.done():  # the client went away, or another part failed
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
        return
    pending.parts.append((part.start, result))
    pending.done += part.rows
    if pending.done < pending.rows:
        return
    if len(pending.parts) == 1:
        pending.future.set_result(result)
        return
    assert layout is not None
    ordered = [outputs for _, outputs in sorted(pending.parts, key=lambda p: p[0])]
    pending.future.set_result([np.concatenate([o[i] for o in ordered], axis=axis)
                               for i, axis in enumerate(layout.output_axes)])
