"""Two compiled variants of one model behind one name, chosen by query size (DeepRecSched's offload
threshold): a request of more than `threshold` rows goes to the `large` variant's batcher, the rest to
the `small` one's. In DeepRecSched the large variant is a GPU; here it is any artifact with the same
inputs and outputs (an int8 or bf16 build, a pool of workers, a CUDA artifact when one exists).

`Router` answers what the server asks of a batcher (admit, run_now, submit, start, drain, warm_up,
layout, max_batch), so a routed model is served like any other. `recc tune-serving ART --variant ART2`
searches the threshold by measurement. Both variants run on this machine's cores: when they are CPU
builds they compete for them, and the tuner measures exactly that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.runtime.batcher import Batcher


def check_same_signature(a: Any, b: Any) -> None:
    """Raise ValueError unless two loaded artifacts take and return the same tensors (names, dtypes, dims)."""
    def signature(model: Any) -> list[tuple[str, str, tuple[Any, ...]]]:
        m = model.manifest
        return [(t.name, str(t.dtype), tuple(str(d) for d in t.shape)) for t in (*m.inputs, *m.outputs)]

    if signature(a) != signature(b):
        raise ValueError(f"variants of one model must take and return the same tensors: {a.path} has "
                         f"{signature(a)}, {b.path} has {signature(b)}")


class Router:
    """Route each request by its rows: more than `threshold` to `large`, else `small`."""

    def __init__(self, small: Batcher, large: Batcher, threshold: int) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 rows, got {threshold}")
        self.small, self.large, self.threshold = small, large, threshold
        self.layout, self.max_batch, self.model = small.layout, small.max_batch, small.model

    def route(self, rows: int) -> Batcher:
        return self.large if rows > self.threshold else self.small

    def admit(self, rows: int, deadline_s: float | None, spent_s: float = 0.0) -> None:
        self.route(rows).admit(rows, deadline_s, spent_s)

    def run_now(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray] | None:
        return self.route(rows).run_now(tensors, rows)

    async def submit(self, tensors: list[torch.Tensor], rows: int) -> list[np.ndarray]:
        return await self.route(rows).submit(tensors, rows)

    def start(self) -> None:
        self.small.start()
        self.large.start()

    async def drain(self) -> None:
        await self.small.drain()
        await self.large.drain()

    def warm_up(self, make_inputs: Any, small: int = 1, large: int = 64, calls: int = 3) -> None:
        self.small.warm_up(make_inputs, small, large, calls)
        self.large.warm_up(make_inputs, small, large, calls)
