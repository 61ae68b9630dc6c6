"""Dynamic batching and admission control for one served model.

Requests that passed validation wait in a queue. A batcher task takes the oldest, then waits at most
`max_delay_s` from that request's arrival for more, up to `max_batch` rows, concatenates them along the
batch axis (only for a model whose `BatchLayout` allows it; otherwise one request per call), runs one
model call on an executor thread (a TVM call blocks, the event loop must not) and splits the outputs
back. One call per model runs at a time: TVM's thread pool already uses the cores.

Admission: a request with a deadline is refused at once (`Refused`, answered 429) when its predicted
completion misses it. A call of r rows is modelled as `seconds_per_call + r * seconds_per_row`, both
measured (start-up calls at two batch sizes, then exponentially weighted moving averages over the calls
served: big batches update the per-row time, small ones the per-call time). The prediction for a request
of r rows with R rows ahead of it (queued, plus the batch running) is
`ceil((R + r) / max_batch) * seconds_per_call + (R + r) * seconds_per_row`, plus the batching delay when
nothing runs and its batch would not fill. Before any measurement nothing is refused. A request admitted
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


class Batcher:
    """The queue and the batching loop of one model; `start()` on the event loop, `drain()` to stop."""

    def __init__(self, name: str, model: Any, layout: BatchLayout | None, executor: Executor, metrics: Any,
                 max_batch: int = 256, max_delay_s: float = 0.002, ewma_weight: float = 0.2,
                 inline_max_s: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.name, self.model, self.layout = name, model, layout
        self.max_batch, self.max_delay_s, self.inline_max_s = max_batch, max_delay_s, inline_max_s
        self._executor, self._weight = executor, ewma_weight
        # this model's metric series, looked up once (a labels() lookup costs microseconds a request)
        self._queue_depth, self._direct = metrics.queue_depth.labels(name), metrics.direct.labels(name)
        self._batch_size, self._inference = metrics.batch_size.labels(name), metrics.inference.labels(name)
        self.seconds_per_call: float = 0.0  # the cost model admission predicts with (module docstring)
        self.seconds_per_row: float | None = None
        self._waiting: deque[Pending] = deque()
        self._waiting_rows = 0
        self._running_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- admission --------------------------------------------------------------------------------------
    def predicted_s(self, rows: int) -> float | None:
        """Seconds from now until a request of `rows` rows would complete, or None before any measurement."""
        if self.seconds_per_row is None:
            return None
        total = self._waiting_rows + self._running_rows + rows
        idle_wait = self.max_delay_s if self._running_rows == 0 and total < self.max_batch else 0.0
        calls = max(1, math.ceil(total / self.max_batch)) if self.layout is not None else total
        return idle_wait + calls * self.seconds_per_call + total * self.seconds_per_row

    def admit(self, rows: int, deadline_s: float | None, spent_s: float = 0.0) -> None:
        """Raise `Refused`, with the prediction spelled out, if a request that arrived `spent_s` ago
        cannot meet `deadline_s` (counted from its arrival)."""
        predicted = self.predicted_s(rows) if deadline_s is not None else None
        if predicted is not None and spent_s + predicted > deadline_s:
            ahead = self._waiting_rows + self._running_rows
            raise Refused(f"model {self.name!r} is overloaded: predicted completion {(spent_s + predicted) * 1e3:.3f} ms "
                          f"after arrival ({spent_s * 1e3:.3f} ms reading the request, {ahead} rows ahead + {rows} "
                          f"rows at {self.seconds_per_call * 1e6:.0f} us per call + {self.seconds_per_row * 1e6:.1f} "
                          f"us per row) misses the deadline of {deadline_s * 1e3:g} ms; retry later or with a longer deadline")

    # -- queueing ---------------------------------------------------------------------------------------
    async def submit(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray]:
        """Queue validated inputs of `rows` rows; their outputs once the batch that holds them has run."""
        pending = Pending(tensors, rows, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._waiting_rows += rows
        self._queue_depth.set(len(self._waiting))
        assert self._wakeup is not None, "Batcher.start() was not called"
        self._wakeup.set()
        return await pending.future

    def run_now(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray] | None:
        """The outputs of a call made right here, if the model is idle and the call is predicted short
        (module docstring); None: queue it with `submit`."""
        if self._waiting or self._running_rows or self._task is None or self.seconds_per_row is None:
            return None
        if self.seconds_per_call + rows * self.seconds_per_row > self.inline_max_s:
            return None
        self._running_rows = rows
        try:
            (result,) = self._run([Pending(tensors, rows, None)], rows)
        finally:
            self._running_rows = 0
        if isinstance(result, BaseException):
            raise result
        self._direct.inc()
        return result

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def drain(self) -> None:
        """Finish every queued request, then stop (graceful shutdown)."""
        while self._waiting or self._running_rows:
            await asyncio.sleep(0.001)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take_batch()
            rows = sum(p.rows for p in batch)
            self._running_rows = rows
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch, rows)
            except BaseException as e:  # noqa: BLE001 - the executor itself failed: fail the batch, explicitly
                results = [e] * len(batch)
            finally:
                self._running_rows = 0
            for pending, result in zip(batch, results):
                if pending.future is None or pending.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _take_batch(self) -> list[Pending]:
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
        batch, rows = [self._waiting.popleft()], 0
        rows = batch[0].rows
        while self.layout is not None and self._waiting and rows + self._waiting[0].rows <= self.max_batch:
            batch.append(self._waiting.popleft())
            rows += batch[-1].rows
        self._waiting_rows -= rows
        self._queue_depth.set(len(self._waiting))
        return batch

    # -- running (on the executor thread) -----------------------------------------------------------------
    def _run(self, batch: list[Pending], rows: int) -> list[list[np.ndarray] | BaseException]:
        start = time.perf_counter()
        results, joined = run_together(self.model, self.layout, [(p.tensors, p.rows) for p in batch])
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
        """Calls on the executor's thread (its VM is made there, not in the first request's time) with
        `make_inputs(rows)` at two sizes, to seed the cost model. Not counted in the metrics."""
        def timed(tensors: list[torch.Tensor]) -> float:
            start = time.perf_counter()
            self.model(*tensors)
            return time.perf_counter() - start

        def median_s(rows: int) -> float:
            tensors, _ = self.model.validate(*make_inputs(rows))
            return float(np.median([self._executor.submit(timed, tensors).result() for _ in range(calls)]))

        t_small = median_s(small)
        if self.layout is None or large <= small:
            self.seconds_per_call, self.seconds_per_row = 0.0, t_small  # one request per call: its time
            return
        t_large = median_s(large)
        self.seconds_per_row = max((t_large - t_small) / (large - small), 1e-9)
        self.seconds_per_call = max(t_small - small * self.seconds_per_row, 0.0)


_ROWS_FOR_PER_ROW = 8  # a call of at least this many rows updates the per-row time, a smaller one the per-call

Outcome = list[np.ndarray] | Exception  # a request's outputs, or why its call failed


def run_together(model: Any, layout: BatchLayout | None,
                 requests: list[tuple[list[torch.Tensor], int]]) -> tuple[list[Outcome], bool]:
    """One model call for validated `requests` (inputs, rows): concatenated along `layout`'s batch axes
    when there are several (their model must have a layout), the outputs split back per request. If that
    call fails (validated inputs can still fail: an id the model computes), each request runs alone and
    gets its own outcome; the flag says whether the one call succeeded. Blocks: call it off the event loop."""
    try:
        if len(requests) == 1:
            return [output_arrays(model(*requests[0][0]))], True
        return _run_concatenated(model, layout, requests), True
    except Exception as e:  # noqa: BLE001 - handed to the requests' callers
        if len(requests) == 1:
            return [e], False
        return [_run_alone(model, tensors) for tensors, _ in requests], False


def _run_concatenated(model: Any, layout: BatchLayout | None,
                      requests: list[tuple[list[torch.Tensor], int]]) -> list[list[np.ndarray]]:
    assert layout is not None, "requests are concatenated only for a model with a batch layout"
    joined = [torch.cat([t[i] for t, _ in requests], dim=axis) for i, axis in enumerate(layout.input_axes)]
    outputs = output_arrays(model(*joined))
    cuts = np.cumsum([rows for _, rows in requests])[:-1]
    parts = [np.split(out, cuts, axis=axis) for out, axis in zip(outputs, layout.output_axes)]
    return [[part[i] for part in parts] for i in range(len(requests))]


def _run_alone(model: Any, tensors: list[torch.Tensor]) -> Outcome:
    try:
        return output_arrays(model(*tensors))
    except Exception as e:  # noqa: BLE001 - handed to that request's caller
        return e
