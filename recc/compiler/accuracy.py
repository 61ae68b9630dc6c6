"""Reduced precision, measured: how far a reduced-precision graph or artifact is from fp32, which layer
contributes most, and the per-layer choice behind `precision="auto"`.

The fp32 reference is the reference interpreter on the fp32 graph (the function every fp32 build computes
to within 1e-5). Inputs are held-out synthetic ones (`synthetic_inputs`): float features drawn with the
example inputs' per-column mean and spread, ids drawn from the ids the examples hold, with another seed,
so the numbers are not measured on the calibration rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, Node

TOP_K = 10
DEFAULT_MAX_ERROR = 1e-2  # `auto`'s bound on the max abs output difference (the issue's int8 target)


class PrecisionError(ValueError):
    """A reduced-precision build misses the accuracy bound it was given."""


@dataclass(frozen=True)
class PrecisionConfig:
    precision: str = "fp32"  # fp32 | int8 | bf16 | auto
    keep_fp32: tuple[str, ...] = ()  # layers named by weight or module path ("top.4") stay fp32
    max_error: float | None = None  # refuse (int8/bf16) or steer (auto) past this max abs difference
    calibrate: int | None = None  # int8 activations static, from this many calibration rows (None: dynamic)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int8", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, int8, bf16 or auto, not {self.precision!r}")
        if self.max_error is not None and not self.max_error > 0:
            raise ValueError(f"max_error must be > 0, got {self.max_error}")
        if self.calibrate is not None:
            if isinstance(self.calibrate, bool) or not isinstance(self.calibrate, (int, np.integer)) \
                    or self.calibrate <= 0:
                raise ValueError(f"calibrate must be a positive number of rows, got {self.calibrate!r}")
            if self.precision not in ("int8", "auto"):
                raise ValueError(f"calibrate quantizes int8 activations statically: it needs precision int8 or "
                                 f"auto, not {self.precision!r}")

    @property
    def reduced(self) -> bool:
        return self.precision != "fp32"

    def pass_options(self, int8_kernel: str | None, bf16_kernel: str | None = None,
                     cache_bytes: int = 32 << 20) -> tuple[tuple[str, Any], ...]:
        precision = "int8" if self.precision == "auto" else self.precision
        return (("precision", precision), ("keep_fp32", tuple(self.keep_fp32)), ("int8_kernel", int8_kernel),
                ("bf16_kernel", bf16_kernel), ("auto", self.precision == "auto"), ("cache_bytes", cache_bytes))


def synthetic_inputs(examples: Sequence[np.ndarray], batch: int, seed: int) -> list[np.ndarray]:
    """`batch` rows like the examples' (dim 0 is the batch): floats with each column's mean and spread,
    integers (ids) drawn from the values the examples hold."""
    rng = np.random.default_rng(seed)
    out = []
    for x in examples:
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] == 0:
            out.append(x)
            continue
        rows = rng.integers(0, x.shape[0], batch)
        if np.issubdtype(x.dtype, np.floating):
            finite = np.where(np.isfinite(x), x, 0)
            mean, std = finite.mean(axis=0), finite.std(axis=0) + 0.1
            out.append((mean + std * rng.standard_normal((batch, *x.shape[1:]))).astype(x.dtype))
        else:
            flat = x.reshape(-1)
            out.append(flat[rng.integers(0, flat.size, (batch, *x.shape[1:]))].astype(x.dtype)
                       if flat.size else x[rows])
    return out


def errors(reference: Sequence[np.ndarray], got: Sequence[np.ndarray], query: int) -> dict[str, float]:
    """Max and mean abs difference over all outputs, and the mean top-k agreement of the first output's
    ranking within each query of `query` consecutive rows (1.0: the same top TOP_K candidates)."""
    diffs = [np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).reshape(-1)
             for a, b in zip(reference, got, strict=True)]
    diff = np.concatenate(diffs) if diffs else np.zeros(1)
    ref0, got0 = (np.asarray(reference[0], np.float64).reshape(len(reference[0]), -1)[:, 0],
                  np.asarray(got[0], np.float64).reshape(len(got[0]), -1)[:, 0])
    k = min(TOP_K, query)
    agree = []
    for start in range(0, len(ref0) - query + 1, query):
        a = set(np.argsort(-ref0[start:start + query], kind="stable")[:k])
        b = set(np.argsort(-got0[start:start + query], kind="stable")[:k])
        agree.append(len(a & b) / k)
    return {"max_abs": float(np.nanmax(diff)) if diff.size else 0.0,
            "mean_abs": float(np.nanmean(diff)) if diff.size else 0.0,
            "top_k": TOP_K, "top_k_agreement": float(np.mean(agree)) if agree else 1.0}


def reduced_layers(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op == "dense" and n.attrs.get("precision", "fp32") != "fp32"]


def _with_only(graph: Graph, keep: set[int]) -> Callable[[], None]:
    """Set every reduced layer not in `keep` (node ids) to fp32; returns the undo."""
    saved = {id(n): (n, n.attrs.get("precision")) for n in reduced_layers(graph)}
    for key, (node, _) in saved.items():
        if key not in keep:
            node.attrs["precision"] = "fp32"

    def undo() -> None:
        for node, precision in saved.values():
            node.attrs["precision"] = precision
    return undo


def attribute(graph: Graph, inputs: list[np.ndarray], reference: list[np.ndarray]) -> list[tuple[str, float]]:
    """Each reduced layer's own contribution: the max abs output difference with only it reduced, worst first."""
    out = []
    for node in reduced_layers(graph):
        undo = _with_only(graph, {id(node)})
        try:
            got = interpret(graph, inputs)
        finally:
            undo()
        out.append((node.inputs[1].name, errors(reference, got, len(inputs[0]))["max_abs"]))
    return sorted(out, key=lambda item: -item[1])


def choose_layers(graph: Graph, inputs: list[np.ndarray], reference: list[np.ndarray], bound: float,
                  say: Callable[[str], None]) -> list[str]:
    """`auto`: keep reduced every layer the bound allows, returning the fp32 ones: while the interpreted
    error exceeds `bound`, the layer contributing most goes back to fp32."""
    kept: list[str] = []
    while reduced_layers(graph):
        worst = errors(reference, interpret(graph, inputs), len(inputs[0]))["max_abs"]
        if worst <= bound:
            break
        name, contribution = attribute(graph, inputs, reference)[0]
        say(f"auto: max abs error {worst:.3g} > {bound:g}; {name} back to fp32 (alone: {contribution:.3g})")
        for node in reduced_layers(graph):
            if node.inputs[1].name == name:
                node.attrs["precision"] = "fp32"
        kept.append(name)
    return kept
