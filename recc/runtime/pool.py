"""An executor pool: N worker processes, each running one model call at a time on cores of its own.

Each worker is a process (spawned, not forked: TVM's and torch's thread pools do not survive a fork) that
loads the artifact itself (`recc.load`: the weights are memory-mapped, so the workers share one copy of
them in the OS page cache), pinned to its own cores (`os.sched_setaffinity`; TVM's own thread binding is
turned off so the pin holds) with as many TVM threads as cores: N workers x T threads never oversubscribe
the machine. A `Worker` is driven by one thread of the parent (`Worker.__call__` blocks until the call is
done, as an in-process call does), so the batcher treats a pool of N workers as N executors.

Tensors cross a socket pair as raw bytes, one message per call (the wire format is below). Nothing is
pickled. On the 2-core development VM a call costs ~0.3-1 ms more through a worker than in process
(mostly waking the other process, ~0.1 ms each way, plus copying the tensors). An exception raised by the model is sent back by class and message and raised
again in the parent (ValueError stays ValueError, so a bad input still answers 400).

A worker that dies (SIGKILL, a crash in native code) is replaced: `Worker.__call__` starts a new process
and runs the call again there, once. A call that also kills its second worker fails explicitly
(`WorkerCrashed`); nothing is dropped silently. `runner` says what a worker runs: `("artifact", PATH)`
(a recc artifact) or `("factory", "module:function", kwargs)` (an `nn.Module` made in the worker: eager
PyTorch baselines run in the same pool, with torch limited to the worker's cores).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Worker", "WorkerCrashed", "cpu_sets", "start_workers"]

_READY = b"ready"


class WorkerCrashed(RuntimeError):
    """A worker process died running a call, twice (the call itself kills it)."""


def cpu_sets(workers: int, threads: int) -> list[list[int]]:
    """The cores each worker is pinned to: consecutive groups of `threads` from the cores this process
    may use, wrapping around when workers x threads exceeds them (then cores are shared, and said so)."""
    cores = sorted(os.sched_getaffinity(0))
    return [[cores[(w * threads + t) % len(cores)] for t in range(threads)] for w in range(workers)]


# -- the wire: one message per call ----------------------------------------------------------------------
# [u64 body bytes][u32 header bytes] then the body: the JSON header (dtype and shape of each array) padded
# to 64 bytes, then each array's bytes padded to 64, so arrays received into a 64-byte aligned buffer are
# aligned views of it (the compiled model's fast path takes them without a copy). One sendmsg of all the
# pieces (no joined copy), one buffer received.
_PREFIX = struct.Struct("<QI")
_SOCKET_BUFFER = 8 << 20  # the kernel caps it at net.core.wmem_max
_ALIGN = 64


def _padding(n: int) -> bytes:
    return b" " * (-n % _ALIGN)


def send_arrays(sock: socket.socket, header: dict[str, Any], arrays: list[np.ndarray]) -> None:
    arrays = [np.ascontiguousarray(a) for a in arrays]
    head = json.dumps(dict(header, arrays=[[a.dtype.str, list(a.shape)] for a in arrays])).encode()
    pieces: list[Any] = [head, _padding(len(head))]
    for a in arrays:
        pieces += [memoryview(a).cast("B") if a.nbytes else b"", _padding(a.nbytes)]
    body = sum(len(p) for p in pieces)
    views = [memoryview(p).cast("B") for p in [_PREFIX.pack(body, len(head)), *pieces] if len(p)]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the other end of the worker pipe closed")
        got += n


def recv_arrays(sock: socket.socket, empty: Any = np.empty) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The header and the arrays `send_arrays` sent, as views of one buffer `empty(bytes, uint8)`."""
    prefix = bytearray(_PREFIX.size)
    _recv_into(sock, memoryview(prefix))
    body_bytes, head_bytes = _PREFIX.unpack(prefix)
    body = empty(body_bytes, np.dtype(np.uint8))
    _recv_into(sock, memoryview(body))
    header = json.loads(body[:head_bytes].tobytes())
    arrays, offset = [], head_bytes + (-head_bytes % _ALIGN)
    for dtype, shape in header["arrays"]:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays.append(np.frombuffer(body, dtype, count, offset).reshape(shape))
        offset += count * dtype.itemsize
        offset += -offset % _ALIGN
    return header, arrays


def _aligned_empty(nbytes: int, dtype: np.dtype) -> np.ndarray:
    """A numpy view of a new torch tensor: 64-byte aligned, as the compiled model's fast path needs."""
    import torch

    return torch.empty(nbytes, dtype=torch.uint8).numpy()


# -- the worker process -----------------------------------------------------------------------------------
def _make_runner(runner: list[Any], threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    if runner[0] == "artifact":
        from recc.runtime.compiled_model import load

        return load(runner[1], threads=threads)
    if runner[0] == "factory":
        import importlib

        module, _, function = runner[1].partition(":")
        model = getattr(importlib.import_module(module), function)(**runner[2])
        model.eval()
        return model  # the worker passes torch tensors (aligned views of the received buffer)
    raise ValueError(f"unknown runner {runner[0]!r}")


def _worker_main(conn: socket.socket, runner: list[Any], cores: list[int]) -> None:
    os.sched_setaffinity(0, cores)
    import torch

    from recc.runtime.protocol import output_arrays

    model = _make_runner(runner, len(cores))
    conn.sendall(_READY)
    with torch.inference_mode():
        while True:
            try:
                _, arrays = recv_arrays(conn, _aligned_empty)
            except EOFError:  # the parent closed the pipe: stop
                return
            start = time.perf_counter()
            try:
                outputs = output_arrays(model(*[torch.from_numpy(a) for a in arrays]))
            except Exception as e:  # noqa: BLE001 - sent back to the caller by class and message
                send_arrays(conn, {"error": type(e).__name__, "message": str(e)}, [])
                continue
            send_arrays(conn, {"seconds": time.perf_counter() - start}, outputs)


# -- the parent's handle ----------------------------------------------------------------------------------
class Worker:
    """One worker process and its pipe; call it from one thread at a time (a batcher slot)."""

    def __init__(self, runner: tuple[Any, ...], cores: list[int], start_timeout_s: float = 120.0,
                 on_restart: Callable[[], Any] | None = None) -> None:
        self.runner, self.cores, self.start_timeout_s, self.on_restart = runner, cores, start_timeout_s, on_restart
        self.restarts = 0
        self.last_compute_s = 0.0  # the worker's own time for the last call (queueing and transfer excluded)
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: socket.socket | None = None
        self._start()

    def _start(self) -> None:
        # A fresh interpreter running this module (not multiprocessing's spawn, which re-imports the
        # caller's main script), talking over a socket pair; the environment set before TVM or torch start.
        parent, child = socket.socketpair()
        for end in (parent, child):  # a whole call's tensors fit: one wake-up per message, not one per 200 KB
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        env = dict(os.environ, TVM_BIND_THREADS="0", TVM_NUM_THREADS=str(len(self.cores)),
                   OMP_NUM_THREADS=str(len(self.cores)))
        argv = [sys.executable, "-m", "recc.runtime.pool", str(child.fileno()), json.dumps(list(self.runner)),
                ",".join(map(str, self.cores))]
        self._process = subprocess.Popen(argv, env=env, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        self._conn = parent
        if not select.select([parent], [], [], self.start_timeout_s)[0]:
            self._process.kill()
            raise RuntimeError(f"worker on cores {self.cores} did not start within {self.start_timeout_s:g} s")
        try:
            message = bytearray(len(_READY))
            _recv_into(parent, memoryview(message))
        except (EOFError, OSError):
            raise RuntimeError(f"worker on cores {self.cores} died while loading {self.runner[1]} "
                               f"(exit code {self._process.wait()}; its error is above)") from None
        assert message == _READY, message

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """The model's outputs for `arrays`, computed in the worker; a dead worker is replaced and the call
        run again there once (module docstring)."""
        with self._lock:
            plain = [np.asarray(a) for a in arrays]
            for attempt in range(2):
                try:
                    return self._call(plain)
                except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                    self._replace()
                    if attempt == 1:
                        raise WorkerCrashed("a worker process died running this call, and its replacement died "
                                            "running it again; the call was not completed") from None
            raise AssertionError("unreachable")

    def _call(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        assert self._conn is not None
        send_arrays(self._conn, {}, arrays)
        header, outputs = recv_arrays(self._conn)
        if "error" in header:
            kind = ValueError if header["error"] in ("ValueError", "ArtifactError") else RuntimeError
            raise kind(header["message"])
        self.last_compute_s = float(header["seconds"])
        return outputs

    def _replace(self) -> None:
        self.close()
        self.restarts += 1
        if self.on_restart is not None:
            self.on_restart()
        self._start()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def start_workers(runner: tuple[Any, ...], workers: int, threads: int = 1,
                  on_restart: Callable[[], Any] | None = None) -> list[Worker]:
    """`workers` processes running `runner`, each pinned to `threads` cores of its own, started in
    parallel (each loads the model: seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as starting:
        return list(starting.map(lambda cores: Worker(runner, cores, on_restart=on_restart), cpu_sets(workers, threads)))


if __name__ == "__main__":  # a worker: python -m recc.runtime.pool FD RUNNER_JSON CORES
    _worker_main(socket.socket(fileno=int(sys.argv[1])), json.loads(sys.argv[2]), [int(c) for c in sys.argv[3].split(",")])
