"""One OpInfo sample through eager PyTorch, torch.export and recc, and the verdict.

A sample (`torch.testing._internal.opinfo.core.SampleInput`) becomes a module whose forward takes the
sample's tensors (sample.input, tensor args and kwargs, tensors inside lists, made contiguous) as flat
positional inputs and closes over everything else. `check_sample` then:

1. runs it eagerly under no_grad, twice: a sample that raises is skipped, one whose two results differ is
   excluded (random or uninitialized output), as are the ops `is_random` names;
2. torch.exports it with static shapes and decomposes to Core ATen: a failure, an output that is not a
   tensor (or a flat tuple/list of tensors), or an op left that is not Core ATen -> "not exportable";
3. compiles it with recc.compile at the sample's exact shapes (every dim static): a deliberate refusal
   (NotImplementedError / ValueError raised by recc's own code, or any recc error class) -> "refused",
   anything else (a TVM error, TypeError, KeyError, a bare assert, a timeout) -> "crashed";
4. compares the compiled model's outputs with eager's (`compare`: same count, dtype and shape; floats
   within atol 1e-5 + rtol 1e-4 with NaN and inf where eager has them, everything else exact), on the
   sample and on a second, seeded input of the same shapes and value ranges (`fresh_inputs`) -> "passed"
   or "wrong"; an error while running the compiled model is "crashed".
"""

from __future__ import annotations

import os
import re
import signal
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils import _pytree as pytree

from recc.bench.opinfo_ties import Comparator

ATOL, RTOL = 1e-5, 1e-4
SAMPLE_TIMEOUT_S = 60
# Ops whose output is random or uninitialized: compared with nothing (a name's dotted parts, e.g.
# nn.functional.dropout -> {nn, functional, dropout}; 'normalize' is not 'normal').
RANDOM_PARTS = {"bernoulli", "normal", "multinomial", "uniform", "exponential", "geometric", "cauchy",
                "log_normal", "randint", "poisson"}
NOT_CORE = "not Core ATen: "
EVALUATED = ("passed", "refused", "wrong", "crashed")  # the statuses that count in the pass rate
# Status of an op and dtype from its samples' statuses: the first of these any sample has.
PRECEDENCE = ("wrong", "crashed", "refused", "passed", "excluded", "not exportable", "skipped")


class SampleTimeout(Exception):
    pass


@dataclass
class SampleResult:
    status: str  # passed | refused | wrong | crashed | not exportable | excluded | skipped
    reason: str = ""
    stage: str = ""  # eager | export | compile | run | compare | compare-fresh
    max_abs_error: float | None = None
    seconds: float = 0.0
    shapes: list[list[int]] = field(default_factory=list)
    beyond_core: str = ""  # for a sample that exports but not to Core ATen: recc's status on it anyway
    beyond_core_reason: str = ""


def op_label(op: Any) -> str:
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def is_random(op: Any) -> bool:
    parts = set(op.name.split("."))
    return bool(parts & RANDOM_PARTS) or any(p.startswith("rand") or "empty" in p or "dropout" in p
                                             for p in parts)


class SampleModule(torch.nn.Module):
    """forward(*tensors) = fn(*args, **kwargs) with the sample's tensors put back where they were."""

    def __init__(self, fn: Callable[..., Any], leaves: list[Any], spec: Any) -> None:
        super().__init__()
        self.slots = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
        self.fn, self.spec = fn, spec
        self.leaves = [None if isinstance(x, torch.Tensor) else x for x in leaves]  # tensors are inputs

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self.leaves)
        for slot, t in zip(self.slots, tensors):
            leaves[slot] = t
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.fn(*args, **kwargs)


class NoInputModule(SampleModule):
    """A sample without tensors (a factory op): forward takes nothing."""

    def forward(self) -> Any:  # type: ignore[override]
        return super().forward()


def wrap_sample(fn: Callable[..., Any], sample: Any) -> tuple[SampleModule, tuple[torch.Tensor, ...]] | None:
    """The module and its inputs (contiguous copies), or None when a tensor has a zero-size dim."""
    leaves, spec = pytree.tree_flatten(((sample.input, *sample.args), dict(sample.kwargs)))
    tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
    if any(0 in t.shape for t in tensors):
        return None
    leaves = [x.detach().clone().contiguous() if isinstance(x, torch.Tensor) else x for x in leaves]
    module = (SampleModule if tensors else NoInputModule)(fn, leaves, spec)
    return module, tuple(x for x in leaves if isinstance(x, torch.Tensor))


def outputs_of(result: Any) -> list[torch.Tensor] | None:
    """A result as a flat list of tensors, or None if it is anything else (a number, a nested tuple)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and result and all(isinstance(r, torch.Tensor) for r in result):
        return list(result)
    return None


def run_eager(module: SampleModule, inputs: tuple[torch.Tensor, ...]) -> Any:
    with torch.no_grad():
        return module(*(t.clone() for t in inputs))


def compare(expected: list[torch.Tensor], actual: Any) -> tuple[str | None, float]:
    """(None, max abs error) when `actual` matches `expected`, else (what differs, max abs error)."""
    got = outputs_of(actual if isinstance(actual, (tuple, list)) else [actual])
    if got is None or len(got) != len(expected):
        return f"{len(expected)} outputs expected, got {type(actual).__name__} {_count(actual)}", float("inf")
    worst = 0.0
    for i, (e, a) in enumerate(zip(expected, got)):
        if a.dtype != e.dtype or tuple(a.shape) != tuple(e.shape):
            return f"output {i}: {a.dtype} {list(a.shape)}, eager {e.dtype} {list(e.shape)}", float("inf")
        if e.dtype.is_floating_point or e.dtype.is_complex:
            problem, err = _compare_float(e, a)
        else:
            bad = a != e
            err = float((a.double() - e.double()).abs().max()) if e.numel() and e.dtype != torch.bool else (
                float(bad.any()))
            problem = f"{int(bad.sum())} of {e.numel()} values differ" if bool(bad.any()) else None
        worst = max(worst, err)
        if problem:
            return f"output {i}: {problem}, max abs error {err:.3g}", worst
    return None, worst


def _count(x: Any) -> int:
    return len(x) if isinstance(x, (tuple, list)) else 1


def _compare_float(e: torch.Tensor, a: torch.Tensor) -> tuple[str | None, float]:
    e64, a64 = e.to(torch.complex128 if e.dtype.is_complex else torch.float64), a.to(
        torch.complex128 if e.dtype.is_complex else torch.float64)
    nan_e, nan_a = torch.isnan(e64), torch.isnan(a64)
    if not torch.equal(nan_e, nan_a):
        return f"NaN at {int((nan_e != nan_a).sum())} positions where eager differs", float("nan")
    inf = torch.isinf(e64) | torch.isinf(a64)
    if not torch.equal(e64[inf], a64[inf]):
        return f"inf at {int((e64[inf] != a64[inf]).sum())} positions where eager differs", float("inf")
    finite = ~(nan_e | inf)
    diff = (a64[finite] - e64[finite]).abs()
    err = float(diff.max()) if diff.numel() else 0.0
    bad = diff > ATOL + RTOL * e64[finite].abs()
    if bool(bad.any()):
        return f"{int(bad.sum())} of {e.numel()} values beyond atol {ATOL} rtol {RTOL}", err
    return None, err


def fresh_inputs(inputs: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """New values of the same shapes and dtypes: floats uniform in the sample's finite range (its NaN and
    inf kept where they were), integers uniform in [min, max] of the sample, bools at random."""
    gen = torch.Generator().manual_seed(seed)

    def fresh(t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.bool:
            return torch.randint(0, 2, t.shape, generator=gen).bool()
        if t.dtype.is_floating_point:
            finite = t[torch.isfinite(t)].double()
            lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
            new = (torch.rand(t.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(t.dtype)
            return torch.where(torch.isfinite(t), new, t)
        if t.dtype.is_complex:
            return t.clone()
        lo, hi = int(t.min()), int(t.max())
        return torch.randint(lo, hi + 1, t.shape, generator=gen, dtype=t.dtype)

    return tuple(fresh(t) for t in inputs)


def non_core_ops(ep: torch.export.ExportedProgram) -> list[str]:
    """The ATen ops left in a decomposed program that are not tagged Core ATen."""
    names = set()
    for node in ep.graph.nodes:
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
            name = target.name()
            if torch.Tag.core not in target.tags and not name.startswith(("aten::_assert", "aten::sym_")):
                names.add(name)
    return sorted(names)


def export_problem(module: SampleModule, inputs: tuple[torch.Tensor, ...]) -> str | None:
    """Why the sample does not export to Core ATen with tensor outputs, or None when it does."""
    try:
        with torch.no_grad():
            ep = torch.export.export(module, inputs).run_decompositions()
    except Exception as e:  # noqa: BLE001 - torch raises many types; the reason is what matters
        return f"{type(e).__name__}: {first_line(e)}"
    outs = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    vals = [o.meta.get("val") if isinstance(o, torch.fx.Node) else o for o in pytree.tree_leaves(outs)]
    if not vals or not all(isinstance(v, torch.Tensor) for v in vals):
        return "an output is not a tensor"
    extra = non_core_ops(ep)
    return f"{NOT_CORE}{', '.join(extra)}" if extra else None


def first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def is_refusal(e: BaseException) -> bool:
    """A deliberate refusal: an error class of recc's own, or a ValueError / NotImplementedError raised
    by recc's code (not by TVM, numpy or torch underneath it)."""
    if type(e).__module__.startswith("recc."):
        return True
    if not isinstance(e, (ValueError, NotImplementedError)) or type(e).__module__.startswith("tvm"):
        return False
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and _in_recc(frames[-1])


RECC_DIR = str(Path(__file__).resolve().parents[1]) + os.sep


def _in_recc(frame: traceback.FrameSummary) -> bool:
    """A frame of recc's compiler (this harness is not)."""
    path = str(Path(frame.filename).resolve())
    return path.startswith(RECC_DIR) and not path.startswith(RECC_DIR + "bench" + os.sep)


def crash_reason(e: BaseException) -> str:
    """The error's type and first line, and the innermost line of recc's own code it passed through."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if _in_recc(f)]
    where = f" (at recc/{str(Path(frames[-1].filename).resolve())[len(RECC_DIR):]}:{frames[-1].lineno})" \
        if frames else ""
    return f"{type(e).__module__}.{type(e).__name__}: {first_line(e)}{where}"


def refusal_reason(e: BaseException) -> str:
    """A refusal's message without the source location (so that equal reasons group)."""
    text = first_line(e, 1000)
    text = re.sub(r" \(from .*?\)(?=(; recc's|: | converted to))", "", text)
    if text.startswith("cannot convert") and e.__cause__ is not None:
        text = text.split(":", 1)[0] + ": " + first_line(e.__cause__)
    return text[:300]


def _alarm(signum: int, frame: Any) -> None:
    raise SampleTimeout(f"timed out after {SAMPLE_TIMEOUT_S} s")


def _static(inputs: tuple[torch.Tensor, ...]) -> tuple[dict, ...] | None:
    """Every dim static: the sample compiles at its exact shapes (no inputs: nothing to say)."""
    return tuple({} for _ in inputs) or None


def compile_and_compare(module: SampleModule, inputs: tuple[torch.Tensor, ...], expected: list[torch.Tensor],
                        seed: int, threads: int | None = 1, compile_fn: Callable[..., Any] | None = None,
                        ties: Comparator | None = None) -> SampleResult:
    """Steps 3 and 4 of the module docstring for one exportable sample."""
    import recc

    build = compile_fn or (lambda m, x: recc.compile(m, x, dynamic_shapes=_static(x), threads=threads,
                                                     tuning_db=None))
    try:
        compiled = build(module, inputs)
    except SampleTimeout as e:
        return SampleResult("crashed", str(e), "compile")
    except Exception as e:  # noqa: BLE001 - sorting every failure into refused or crashed is the point
        if is_refusal(e):
            return SampleResult("refused", refusal_reason(e), "compile")
        return SampleResult("crashed", crash_reason(e), "compile")
    worst = 0.0
    for stage, xs, want in _cases(module, inputs, expected, seed):
        try:
            got = compiled(*(t.clone() for t in xs))
        except Exception as e:  # noqa: BLE001 - a compiled model must run on inputs it was compiled for
            return SampleResult("crashed", f"running: {type(e).__name__}: {first_line(e)}", "run")
        problem, err = compare(want, got) if ties is None else (ties(want, got, xs), 0.0)
        worst = max(worst, err)
        if problem:
            return SampleResult("wrong", problem, stage, err)
    return SampleResult("passed", "", "compare", worst)


def _cases(module: SampleModule, inputs: tuple[torch.Tensor, ...], expected: list[torch.Tensor], seed: int
           ) -> Iterator[tuple[str, tuple[torch.Tensor, ...], list[torch.Tensor]]]:
    yield "compare", inputs, expected
    fresh = fresh_inputs(inputs, seed)
    try:
        want = outputs_of(run_eager(module, fresh))
    except Exception:  # noqa: BLE001 - eager refuses the fresh values (e.g. a domain check): sample only
        return
    if want is not None:
        yield "compare-fresh", fresh, want


def check_sample(fn: Callable[..., Any], sample: Any, label: str, random_op: bool = False,
                 threads: int | None = 1, compile_fn: Callable[..., Any] | None = None,
                 ties: Comparator | None = None) -> SampleResult:
    """A sample's verdict (see the module docstring), within SAMPLE_TIMEOUT_S; `ties` compares the outputs
    of an op whose order of equal elements is unspecified (recc.bench.opinfo_ties)."""
    start = time.perf_counter()
    wrapped = wrap_sample(fn, sample)
    if wrapped is None:
        return SampleResult("skipped", "a zero-size dim", "eager")
    module, inputs = wrapped
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SAMPLE_TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _check(module, inputs, label, random_op, threads, compile_fn, ties)
    except SampleTimeout as e:
        result = SampleResult("skipped", str(e), "eager")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    result.seconds = round(time.perf_counter() - start, 3)
    result.shapes = [list(t.shape) for t in inputs]
    return result


def _check(module: SampleModule, inputs: tuple[torch.Tensor, ...], label: str, random_op: bool,
           threads: int | None, compile_fn: Callable[..., Any] | None, ties: Comparator | None) -> SampleResult:
    try:
        first, second = run_eager(module, inputs), run_eager(module, inputs)
    except Exception as e:  # noqa: BLE001 - a sample eager itself rejects says nothing about recc
        return SampleResult("skipped", f"eager raised {type(e).__name__}: {first_line(e)}", "eager")
    expected = outputs_of(first)
    if random_op:
        return SampleResult("excluded", "random/uninitialized (by name)", "eager")
    if expected is not None and compare(expected, second)[0] is not None:
        return SampleResult("excluded", "random/uninitialized (eager differs run to run)", "eager")
    problem = "an output is not a tensor" if expected is None else export_problem(module, inputs)
    if problem and not problem.startswith(NOT_CORE):
        return SampleResult("not exportable", problem, "export")
    seed = zlib.crc32(label.encode()) & 0x7FFFFFFF
    result = compile_and_compare(module, inputs, expected, seed, threads, compile_fn, ties)
    if problem:  # outside the Core ATen scope, but what recc makes of it is worth knowing
        return SampleResult("not exportable", problem, "export", result.max_abs_error,
                            beyond_core=result.status, beyond_core_reason=result.reason)
    return result


def op_status(results: list[SampleResult]) -> tuple[str, str]:
    """An op and dtype's status and reason from its samples' (PRECEDENCE); no samples -> skipped."""
    for status in PRECEDENCE:
        hit = [r for r in results if r.status == status]
        if hit:
            return status, hit[0].reason
    return "skipped", "no samples"
