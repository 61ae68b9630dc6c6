"""The pass manager: runs an ordered pipeline of passes, times each, records what it did, verifies the
graph after each pass (and, with translation validation on, compares its numbers with the reference
interpreter), and dumps the IR before/after each pass on request.

Passes never print or read the environment; everything they may depend on is in `PassContext`. A pass is
anything with a `name`, a `summary` and `run(graph, ctx) -> PassStats`; recc's own passes are written in
one shape, with the rules, builder and pass bases of `recc.compiler.rewrite`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, print_graph, verify


@dataclass(frozen=True)
class PassContext:
    """Options every pass sees. Frozen: a pass cannot change what the next pass sees."""

    disabled: frozenset[str] = frozenset()
    verify_ir: bool = True
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass
class PassStats:
    rewrites: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)

    def rewrote(self, rule: str, n: int = 1) -> None:
        self.rewrites[rule] = self.rewrites.get(rule, 0) + n

    def rejected(self, rule: str, reason: str) -> None:
        key = f"{rule}: {reason}"
        self.rejects[key] = self.rejects.get(key, 0) + 1


@dataclass
class PassReport:
    name: str
    rewrites: dict[str, int]
    rejects: dict[str, int]
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    ms: float
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pass(Protocol):
    name: str
    summary: str

    def run(self, graph: Graph, ctx: PassContext) -> PassStats: ...


def _graph_numbers(graph: Graph, inputs: list[np.ndarray] | None) -> list[np.ndarray] | None:
    return None if inputs is None else interpret(graph, inputs)


class TranslationValidationError(AssertionError):
    pass


def run_pipeline(graph: Graph, passes: Sequence[Pass], ctx: PassContext,
                 validate_inputs: list[np.ndarray] | None = None, dump_dir: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> list[PassReport]:
    """Run `passes` in order on `graph` (in place) and return one report per pass.

    With `validate_inputs`, the reference interpreter runs after every pass and the first pass whose
    outputs differ from the previous graph's (beyond fp32 rounding) raises TranslationValidationError. A
    pass with `changes_numbers = True` (reduced precision) is exempt; the passes after it are held to its
    numbers.
    """
    reports: list[PassReport] = []
    reference = _graph_numbers(graph, validate_inputs)
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
    for index, p in enumerate(passes):
        ops_before, nodes_before = graph.op_histogram(), len(graph.nodes)
        if p.name in ctx.disabled:
            reports.append(PassReport(p.name, {}, {}, nodes_before, nodes_before, ops_before, ops_before, 0.0, True))
            continue
        if dump_dir is not None:
            _dump(graph, dump_dir / f"{index:02d}-{p.name}-before")
        start = time.perf_counter()
        stats = p.run(graph, ctx)
        ms = (time.perf_counter() - start) * 1e3
        if ctx.verify_ir:
            verify(graph)
        if dump_dir is not None:
            _dump(graph, dump_dir / f"{index:02d}-{p.name}-after")
        reports.append(PassReport(p.name, stats.rewrites, stats.rejects, nodes_before, len(graph.nodes),
                                  ops_before, graph.op_histogram(), round(ms, 3)))
        if progress is not None:
            progress(f"pass {p.name}: {sum(stats.rewrites.values())} rewrites ({ms:.1f} ms)")
        if reference is not None and getattr(p, "changes_numbers", False):
            reference = _graph_numbers(graph, validate_inputs)  # reduced precision: later passes keep these
        elif reference is not None:
            _check_same(p.name, reference, _graph_numbers(graph, validate_inputs))
    return reports


def _check_same(pass_name: str, before: list[np.ndarray], after: list[np.ndarray] | None) -> None:
    assert after is not None
    for i, (a, b) in enumerate(zip(before, after)):
        if a.shape != b.shape:
            raise TranslationValidationError(f"pass {pass_name} changed output {i}'s shape {a.shape} -> {b.shape}")
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        if diff > 1e-5 * max(1.0, scale):
            raise TranslationValidationError(
                f"pass {pass_name} changed the function: output {i} differs by up to {diff:.3g}")


def _dump(graph: Graph, stem: Path) -> None:
    stem.with_suffix(".txt").write_text(print_graph(graph, origins=True))
    from recc.compiler.draw import graph_to_svg

    stem.with_suffix(".svg").write_text(graph_to_svg(graph))

