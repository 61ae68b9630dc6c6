"""The default optimization pipeline: an explicit, ordered list of pass names. Order is data."""

from __future__ import annotations

from typing import Sequence

DEFAULT_PIPELINE: tuple[str, ...] = (
    "simplify-reshapes",
    "cse",
    "canonicalize-dense",
    "fold-constants",
    "canonicalize-activations",
    "fuse-dense-activation",
    "canonicalize-lookups",
    "batch-embedding-bags",
    "fuse-dot-interaction",
    "fuse-attention",
    "fuse-recurrent",
    "simplify-reshapes",
    "simplify-slices",
    "simplify-reshapes",
    "eliminate-dead-nodes",
    "quantize-dense",  # a no-op at precision fp32 (the default)
)


def build_passes(names: Sequence[str] = DEFAULT_PIPELINE) -> list:
    from recc.passes import PASSES

    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ValueError(f"unknown pass(es) {unknown}; known: {sorted(PASSES)}")
    return [PASSES[n]() for n in names]
