"""Seeded synthetic inputs: dense features, power-law sparse ids, behaviour sequences.

Real recommendation traffic is skewed: a few rows of each table take most lookups. Uniform ids
would hide exactly the cache effects that embedding optimizations (dedup, hot-row caching,
prefetch) live on, so ids follow a power law with exponent ~1.05 (Zipf-like), drawn by inverse
CDF of the continuous law on [1, rows + 1) and floored to a popularity rank in [0, rows).

Popularity ranks are then mapped to row ids by a fixed affine permutation per table,
`(rank * a + b) mod rows` with `a` coprime to `rows`, so the hot rows are scattered over the table
instead of all sitting at index 0 (where they would share cache lines and pages by accident). The
permutation depends on the table (stream and index), not on the seed: like real traffic, every
batch has the same hot rows, and different seeds draw different samples of the same law.

Every generator is keyed by (seed, stream name, table index), so adding a table or an input does
not shift the numbers of another. Multi-hot bags have a fixed pooling factor (the DeepRecSys
setting) and come as a dense `[B, L]` block per table, stacked `[B, T, L]` when tables share an
input. Behaviour sequences have random valid lengths in [1, L], padding id 0 after the valid
length (0 is also a real row; the mask, not the id, marks padding) and a float32 0/1 mask.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch

ZIPF_EXPONENT = 1.05


def as_tensor(values: np.ndarray) -> torch.Tensor:
    """A tensor in torch's own memory, as a model's inputs are when torch ops made them: 64-byte aligned
    (torch's allocator), where a numpy buffer is only 16-byte aligned and a compiled runtime that needs
    aligned buffers (TVM's kernels) would copy it on every call."""
    return torch.from_numpy(values).clone()


def stream_rng(seed: int, stream: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), index])


def power_law_ranks(
    rng: np.random.Generator, rows: int, size: tuple[int, ...], exponent: float = ZIPF_EXPONENT
) -> np.ndarray:
    """Popularity ranks in [0, rows), P(rank k) roughly proportional to (k + 1) ** -exponent."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    uniform = rng.random(size)
    power = 1.0 - exponent
    if abs(power) < 1e-12:
        positions = (rows + 1.0) ** uniform
    else:
        positions = (1.0 + uniform * ((rows + 1.0) ** power - 1.0)) ** (1.0 / power)
    return np.minimum(positions.astype(np.int64) - 1, rows - 1)


def scatter_hot_rows(ranks: np.ndarray, rows: int, key: str) -> np.ndarray:
    """Map ranks to row ids with the fixed permutation `(rank * a + b) mod rows` of table `key`."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), rows])
    multiplier = int(rng.integers(1, rows)) if rows > 1 else 1
    while math.gcd(multiplier, rows) != 1:
        multiplier += 1
    offset = int(rng.integers(0, rows)) if rows > 1 else 0
    return (ranks * multiplier + offset) % rows


def dense_features(batch: int, width: int, *, seed: int, stream: str = "dense") -> torch.Tensor:
    """Continuous features, U[0, 1) float32, `[batch, width]`."""
    values = stream_rng(seed, stream).random((batch, width), dtype=np.float32)
    return as_tensor(values)


def bag_ids(batch: int, rows: int, pooling: int, *, seed: int, stream: str, index: int = 0) -> torch.Tensor:
    """One table's multi-hot bags: `[batch, pooling]` int64 ids in [0, rows)."""
    ranks = power_law_ranks(stream_rng(seed, stream, index), rows, (batch, pooling))
    return as_tensor(scatter_hot_rows(ranks, rows, f"{stream}/{index}"))


def stacked_bag_ids(batch: int, rows: Sequence[int], pooling: int, *, seed: int, stream: str) -> torch.Tensor:
    """Bags of several tables stacked as `[batch, tables, pooling]`; column t indexes table t."""
    bags = [
        bag_ids(batch, table_rows, pooling, seed=seed, stream=stream, index=index)
        for index, table_rows in enumerate(rows)
    ]
    return torch.stack(bags, dim=1)


def behaviour_sequences(
    batch: int, rows: int, length: int, *, seed: int, stream: str = "behaviour"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour ids `[batch, length]` int64 and their float32 0/1 mask `[batch, length]`.

    Valid lengths are uniform in [1, length]; ids after a sample's valid length are 0.
    """
    rng = stream_rng(seed, stream)
    lengths = rng.integers(1, length + 1, size=batch)
    ids = scatter_hot_rows(power_law_ranks(rng, rows, (batch, length)), rows, f"{stream}/0")
    is_valid = np.arange(length)[None, :] < lengths[:, None]
    ids = np.where(is_valid, ids, 0)
    return as_tensor(ids), as_tensor(is_valid.astype(np.float32))
