"""Building blocks the models share: MLP stacks, embedding tables, and seeded initialization.

Initialization follows models.md: embedding tables uniform(+-sqrt(1/rows)), Linear weights Xavier
(uniform), biases uniform(+-sqrt(1/out_features)) (the scale of the DLRM reference's bias draw).
Every module draws from its own generator, seeded from (model seed, module path). That makes
`create(name, seed=s)` reproducible bit for bit without touching the global torch RNG, and keeps
weights independent of options: adding a head to MT-WnD leaves the shared layers unchanged, and a
module that can be built two ways (the GRU: explicit cells or `nn.GRU`) gets the same numbers
either way because it draws its parameters itself (`SeededInit`).

Tables are created with uninitialized storage (`_weight=torch.empty(...)`) and filled once, in
place, by `uniform_` with a generator: at scale 1.0 a model holds 2.5-4 GB of tables, and the
default `normal_` init followed by ours would cost twice the time for nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

Activation = Literal["relu", "sigmoid", "none"]


@runtime_checkable
class SeededInit(Protocol):
    """A module that initializes all of its own parameters (its children are not visited)."""

    def reset_parameters_seeded(self, generator: torch.Generator) -> None: ...


def seeded_generator(seed: int, key: str) -> torch.Generator:
    """A torch generator for one (seed, key) pair; independent streams for different keys."""
    state = np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(2, np.uint32)
    generator = torch.Generator()
    generator.manual_seed((int(state[0]) << 32) | int(state[1]))
    return generator


def activation_module(activation: Activation) -> nn.Module | None:
    if activation == "relu":
        return nn.ReLU()
    if activation == "sigmoid":
        return nn.Sigmoid()
    if activation == "none":
        return None
    raise ValueError(f"unknown activation {activation!r}")


def mlp(widths: Sequence[int], *, hidden: Activation = "relu", last: Activation = "none") -> nn.Sequential:
    """Linear layers `widths[0] -> widths[1] -> ...`; `hidden` after all but the last, `last` after it."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(width_in, width_out))
        is_last = index == len(widths) - 2
        activation = activation_module(last if is_last else hidden)
        if activation is not None:
            layers.append(activation)
    return nn.Sequential(*layers)


def embedding_bag(rows: int, dim: int) -> nn.EmbeddingBag:
    """A sum-pooled table; storage left uninitialized until `initialize` fills it once."""
    return nn.EmbeddingBag(rows, dim, mode="sum", _weight=torch.empty(rows, dim))


def embedding(rows: int, dim: int) -> nn.Embedding:
    """An unpooled table (one row per position); storage filled later by `initialize`."""
    return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))


def xavier_weight(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    return nn.init.xavier_uniform_(torch.empty(shape), generator=generator)


def linear_bias(size: int, generator: torch.Generator) -> torch.Tensor:
    bound = math.sqrt(1.0 / size)
    return nn.init.uniform_(torch.empty(size), -bound, bound, generator=generator)


def initialize(model: nn.Module, seed: int) -> None:
    """Fill every parameter of `model` by the rules above; fail loudly if one is missed."""
    initialized: set[int] = set()
    with torch.no_grad():
        _initialize_module(model, "", seed, initialized)
    missed = [name for name, p in model.named_parameters() if id(p) not in initialized]
    if missed:
        raise TypeError(f"no initialization rule for parameters {missed}")


def _initialize_module(module: nn.Module, path: str, seed: int, initialized: set[int]) -> None:
    generator = seeded_generator(seed, path)
    if isinstance(module, SeededInit):
        module.reset_parameters_seeded(generator)
        initialized.update(id(p) for p in module.parameters())
        return
    if isinstance(module, nn.Linear):
        module.weight.copy_(xavier_weight(tuple(module.weight.shape), generator))
        initialized.add(id(module.weight))
        if module.bias is not None:
            module.bias.copy_(linear_bias(module.out_features, generator))
            initialized.add(id(module.bias))
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        bound = math.sqrt(1.0 / module.num_embeddings)
        module.weight.uniform_(-bound, bound, generator=generator)
        initialized.add(id(module.weight))
    for name, child in module.named_children():
        _initialize_module(child, f"{path}.{name}" if path else name, seed, initialized)
