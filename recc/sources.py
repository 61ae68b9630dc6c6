"""Where a model comes from: a built-in model name, or `package.module:factory` for a user's model.

A factory is called with no arguments and returns an nn.Module that has `example_inputs(batch, seed)`,
or a pair `(module, example_inputs)` where example_inputs is such a callable or a tuple of tensors
(whose dim 0 is then repeated or cut to the requested batch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class ModelSource:
    module: torch.nn.Module
    make_inputs: Callable[[int, int], tuple[torch.Tensor, ...]]
    name: str
    record: dict[str, Any]  # stored in the artifact manifest so `recc run` can rebuild the eager model
    examples: tuple[Any, ...] | None = None  # the factory's own example inputs, compiled from as given


def _resize(example: tuple[torch.Tensor, ...]) -> Callable[[int, int], tuple[torch.Tensor, ...]]:
    def make(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
        if not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in example):
            if all(isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == batch for t in example[:1]):
                return example
            raise ValueError(f"this factory's example inputs (not all tensors with a batch dim) cannot be resized "
                             f"to batch {batch}; give the module an example_inputs(batch, seed) method")
        out = []
        for t in example:
            reps = -(-batch // t.shape[0])
            out.append(t.repeat(reps, *([1] * (t.dim() - 1)))[:batch])
        return tuple(out)
    return make


def resolve(spec: str, scale: float = 0.01, seed: int = 0) -> ModelSource:
    if ":" not in spec:
        from recc.models import create

        model = create(spec, scale=scale, seed=seed)
        return ModelSource(model, model.example_inputs, spec,
                           {"kind": "builtin", "name": spec, "scale": scale, "seed": seed})
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load model factory {spec!r}: {e}") from e
    made = factory()
    module, inputs = (made if isinstance(made, tuple) else (made, getattr(made, "example_inputs", None)))
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"{spec} returned {type(module).__name__}, expected an nn.Module")
    if inputs is None:
        raise ValueError(f"{spec}: the module has no example_inputs(batch, seed); return (module, inputs) instead")
    make = inputs if callable(inputs) else _resize(tuple(inputs))
    return ModelSource(module.eval(), make, attr, {"kind": "factory", "spec": spec},
                       None if callable(inputs) else tuple(inputs))


def rebuild(record: dict[str, Any]) -> ModelSource:
    if record.get("kind") == "builtin":
        return resolve(record["name"], record["scale"], record["seed"])
    if record.get("kind") == "factory":
        return resolve(record["spec"])
    if record.get("kind") == "onnx":
        raise ValueError(f"this artifact was compiled from {record.get('path')}; `recc run` compares with an "
                         "eager PyTorch model, which an ONNX file does not have: load it with recc.load() and call it")
    raise ValueError("this artifact was compiled from Python; its eager model cannot be rebuilt by the CLI")
