"""Roofline: this machine's measured limits, each model's work, and how close each system gets.

    machine: copy bandwidth (a large torch copy, bytes read + written per second) and practical GEMM peak
             (a large fp32 torch matmul), at 1 thread and at the benchmark's thread count
    model:   bytes of embedding rows gathered per batch (sum over tables of pooling x dim x 4 bytes) and
             FLOPs of the dense work (matmul, addmm, bmm, ... counted by torch's FlopCounterMode on one
             eager forward at that batch: MLPs, interaction, attention, GRU gates)
    bound:   the shortest time the work could take, max(bytes / bandwidth, FLOPs / GEMM peak)
    fraction = bound / measured median latency (1.0 = at the machine's limit)

The bandwidth of a streaming copy is an optimistic bound for random row gathers (whole cache lines,
hardware prefetch); at small scales tables also fit partly in the caches, where a gather can beat it.
Elementwise work and per-call overheads are not in the bound: a batch-1 fraction is small for everyone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class MachineLimits:
    threads: int
    copy_gbps: float
    gemm_gflops: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_limits(threads: int, copy_mib: int = 256, gemm_size: int = 2048, repeats: int = 5) -> MachineLimits:
    """Best of `repeats` large copies and matmuls with torch pinned to `threads` (best = least disturbed)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        copy_gbps = _copy_gbps(copy_mib * 2**20 // FLOAT32_BYTES, repeats)
        a = torch.randn(gemm_size, gemm_size)
        b = torch.randn(gemm_size, gemm_size)
        torch.mm(a, b)
        gemm_s = min(_timed(lambda: torch.mm(a, b)) for _ in range(max(2, repeats // 2)))
        gemm_gflops = 2 * gemm_size**3 / gemm_s / 1e9
    finally:
        torch.set_num_threads(previous)
    return MachineLimits(threads, round(copy_gbps, 2), round(gemm_gflops, 2))


def _copy_gbps(elements: int, repeats: int) -> float:
    """Bytes read plus written per second by the best of `repeats` copies of `elements` floats."""
    source = torch.ones(elements)
    target = torch.empty_like(source)
    target.copy_(source)
    copy_s = min(_timed(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * elements * FLOAT32_BYTES / copy_s / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class ModelWork:
    batch: int
    gathered_bytes: int
    dense_flops: int

    def bound_s(self, limits: MachineLimits) -> float:
        return max(self.gathered_bytes / (limits.copy_gbps * 1e9), self.dense_flops / (limits.gemm_gflops * 1e9))

    def bound_kind(self, limits: MachineLimits) -> str:
        memory_s = self.gathered_bytes / (limits.copy_gbps * 1e9)
        compute_s = self.dense_flops / (limits.gemm_gflops * 1e9)
        return "memory" if memory_s >= compute_s else "compute"


def model_work(model: Any, batch: int) -> ModelWork:
    """Embedding bytes from the model's table facts; dense FLOPs from one counted eager forward."""
    from torch.utils.flop_counter import FlopCounterMode

    gathered = sum(batch * table.pooling * table.dim * FLOAT32_BYTES for table in model.info().tables)
    inputs = model.example_inputs(batch, seed=batch)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*inputs)
    return ModelWork(batch, gathered, int(counter.get_total_flops()))


def fraction_of_bound(work: ModelWork, limits: MachineLimits, median_s: float) -> float:
    return work.bound_s(limits) / median_s if median_s > 0 else float("nan")
