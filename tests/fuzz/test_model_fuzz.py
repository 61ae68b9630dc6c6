"""A fuzzer for the compiler itself: random recommendation-shaped models from a grammar
(tests/fuzz/model_grammar.py: lookups in every spelling recc converts, MLPs in seven linear spellings
and eight activations, cat and dot interactions, slices and reshapes, residual adds, several heads),
each compiled through the whole pipeline (`recc.compile(model, example_inputs, tuning_db=None)`) and
compared with eager on fresh seeded inputs at two batch sizes in 1..70 (the example's batch is 1..8),
with NaN / inf in a float input in some cases.

Every model must end in one of two ways: recc refuses it at compile time with a clear error
(UnsupportedOpError or another ValueError naming the problem: counted as "refused", and EmbeddingBag
mode="max" must be one), or it compiles and every call returns what eager returns: NaN where eager has
NaN, else within rtol 1e-4 + atol 1e-4 (fp32; outputs of magnitude ~1-10, sums of up to ~200 terms).
A crash, another exception, a refused call or a different answer fails.

Shrunk failing cases live in tests/fuzz/regressions/*.json (a spec and its draws) and are replayed on
every run; one whose bug is not fixed yet carries "xfail" (the reason) and must still fail.
The CI tier runs EXAMPLES models (~3 s each here); RECC_MODEL_FUZZ_EXAMPLES raises it, RECC_FUZZ_LOG writes
one JSON line per model and per grammar feature it uses (bench/results/fuzz/models.md came from
RECC_MODEL_FUZZ_EXAMPLES=220).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recc.frontends.torch_export.capture import UnsupportedOpError

import recc
from tests.fuzz.model_grammar import Spec, build, features, make_inputs, specs

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("RECC_MODEL_FUZZ_EXAMPLES", "10"))
LOG = os.environ.get("RECC_FUZZ_LOG")
RTOL = ATOL = 1e-4
REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))


def _same(got: Any, want: Any, where: str) -> None:
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    assert isinstance(got, tuple) and len(got) == len(want), f"{where}: {len(want)} outputs expected"
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL, equal_nan=True, msg=lambda m: f"{where}: {m}")


def run_case(spec: Spec, example_batch: int, batches: list[int], seed: int, nan: bool) -> tuple[str, str]:
    """Compile the spec's model and compare it with eager; returns (outcome, detail)."""
    model, has_max = build(spec), any(lk["spelling"] == "bag-max" for lk in spec["lookups"])
    example = make_inputs(spec, example_batch, seed)
    with torch.no_grad():
        model(*example)  # the grammar makes only models eager runs
    try:
        compiled = recc.compile(model, example, tuning_db=None)
    except (UnsupportedOpError, ValueError) as e:
        assert not has_max or "mode='max' is not supported" in str(e), f"refused for another reason: {e}"
        return f"refused: {type(e).__name__}", str(e).splitlines()[0][:200]
    assert not has_max, "EmbeddingBag(mode='max') compiled: recc refuses it (toolchain-notes: its NaN rule)"
    for i, batch in enumerate(batches):
        inputs = make_inputs(spec, batch, seed + 1 + i, nan=nan and i == 0)
        with torch.no_grad():
            want = model(*inputs)
        _same(compiled(*inputs), want, f"batch {batch}{' with NaN/inf' if nan and i == 0 else ''}")
    return "compiled: same as eager", ""


def _log(spec: Spec, outcome: str, detail: str) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"test": "model", "damage": "all", "outcome": outcome, "detail": detail}) + "\n")
            for feature in sorted(features(spec)):
                f.write(json.dumps({"test": "feature", "damage": feature, "outcome": outcome}) + "\n")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(spec=specs(), example_batch=st.integers(1, 8), batches=st.lists(st.integers(1, 70), min_size=2, max_size=2),
       seed=st.integers(0, 10**6), nan=st.booleans())
def test_random_models_compile_to_eagers_answers_or_are_refused(spec, example_batch, batches, seed, nan) -> None:
    try:
        outcome, detail = run_case(spec, example_batch, batches, seed, nan)
    except BaseException as e:
        _log(spec, f"FAILED: {type(e).__name__}", str(e).splitlines()[0][:200] if str(e) else "")
        raise
    _log(spec, outcome, detail)


def _regressions() -> list[Any]:
    """Each saved case; one whose bug is still open must still fail (xfail, strict)."""
    cases = []
    for path in REGRESSIONS:
        reason = json.loads(path.read_text()).get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(path, id=path.stem, marks=marks))
    return cases


@pytest.mark.parametrize("path", _regressions())
def test_regression(path: Path) -> None:
    """A shrunk case the fuzzer once failed on, replayed as it was drawn."""
    case = json.loads(path.read_text())
    outcome, _ = run_case(case["spec"], case["example_batch"], case["batches"], case["seed"], case["nan"])
    assert outcome == case.get("outcome", "compiled: same as eager")
