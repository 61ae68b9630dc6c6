"""The eight DeepRecSys benchmark models, rebuilt in PyTorch (docs/models.md).

    create("dlrm-rmc1", scale=0.01, seed=0, interaction="cat") -> RecModel (eval mode, fp32)

Sizes are the DeepRecSys configs; architectures are the original papers'; where the two differ
the DeepRecSys form is an option (`interaction="cat"` for DLRM, `variant="deeprecsys"` for NCF,
WnD, DIN and DIEN, `heads=1` for MT-WnD). `scale` divides every table's rows so tests run on
megabytes instead of the 2.5-4 GB of the full tables.

The registry is one explicit dict: no registration as an import side effect.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from recc.models.dien import DIEN
from recc.models.din import DIN
from recc.models.dlrm import DLRM, RMC1, RMC2, RMC3
from recc.models.ncf import NCF
from recc.models.rec_model import ModelInfo, RecModel, TableInfo
from recc.models.wide_deep import MultiTaskWideAndDeep, WideAndDeep

__all__ = ["ModelInfo", "RecModel", "TableInfo", "create", "names"]

_BUILDERS: dict[str, Callable[..., RecModel]] = {
    "dlrm-rmc1": partial(DLRM, RMC1),
    "dlrm-rmc2": partial(DLRM, RMC2),
    "dlrm-rmc3": partial(DLRM, RMC3),
    "ncf": NCF,
    "wnd": WideAndDeep,
    "mt-wnd": MultiTaskWideAndDeep,
    "din": DIN,
    "dien": DIEN,
}


def names() -> list[str]:
    return list(_BUILDERS)


def options(name: str) -> dict[str, Any]:
    """The model-specific options of `name` and their defaults (scale and seed excluded)."""
    builder = _builder(name)
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in ("scale", "seed")
    }


def create(name: str, scale: float = 1.0, seed: int = 0, **model_options: Any) -> RecModel:
    """Build model `name` with tables scaled by `scale` in (0, 1] and weights seeded by `seed`.

    Construction draws only from its own seeded generators: the global torch RNG is left as it
    was (nn.Linear's default init would otherwise consume it before ours overwrites it).
    """
    builder = _builder(name)
    if not isinstance(scale, (int, float)) or not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    accepted = options(name)
    unknown = sorted(set(model_options) - set(accepted))
    if unknown:
        raise ValueError(f"{name} has no option(s) {unknown}; valid options: {sorted(accepted)}")
    with torch.random.fork_rng(devices=[]):
        return builder(scale=float(scale), seed=seed, **model_options)


def _builder(name: str) -> Callable[..., RecModel]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_BUILDERS)}")
    return _BUILDERS[name]
