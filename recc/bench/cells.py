"""One benchmark cell's timed calls and the statistics and output check `recc bench` derives from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CellTimes:
    """Timed calls of one system at one (model, batch)."""

    output: np.ndarray
    first_call_s: float
    times: list[float] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def summarize(times: list[float], batch: int) -> dict[str, Any]:
    seconds = np.asarray(times)
    median = float(np.median(seconds))
    return {"calls": len(times), "median_us": median * 1e6, "p90_us": float(np.percentile(seconds, 90)) * 1e6,
            "p99_us": float(np.percentile(seconds, 99)) * 1e6, "mean_us": float(seconds.mean()) * 1e6,
            "min_us": float(seconds.min()) * 1e6, "items_per_s": batch / median}


def compare(output: np.ndarray, reference: np.ndarray | None, atol: float) -> tuple[float | None, bool | None]:
    if reference is None:
        return None, None
    if output.shape != reference.shape:
        return float("inf"), False
    error = float(np.max(np.abs(output.astype(np.float64) - reference))) if output.size else 0.0
    return error, bool(error <= atol)
