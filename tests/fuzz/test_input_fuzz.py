"""A fuzzer for bad inputs: the eight built-in models, compiled, called with inputs that are wrong or
unusual in every way a caller can get them wrong (dtypes, ranks, shapes, batch 0 and large, inconsistent
batches, non-contiguous and strided tensors, sparse, requires_grad, the meta device, NaN and inf, ids out of
range, negative, huge, int32 or float, too few or too many inputs, things that are not tensors).

Every case must end in one of two ways: recc refuses it with a ValueError, or it returns what eager
PyTorch returns (NaN where eager has NaN). recc returning where eager raises, a different answer, another
exception or a crash fails. The CI tier runs EXAMPLES cases on four models (DIEN alone takes 90 s to
compile); RECC_FUZZ_EXAMPLES and RECC_FUZZ_MODELS=all raise it (bench/results/fuzz/inputs.md came from
RECC_FUZZ_EXAMPLES=1250 RECC_FUZZ_MODELS=all: 10,000 cases on the eight models).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recc
from recc.models import create, names

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("RECC_FUZZ_EXAMPLES", "40"))
LOG = os.environ.get("RECC_FUZZ_LOG")
MODELS = os.environ.get("RECC_FUZZ_MODELS", "dlrm-rmc1,ncf,wnd,din")
MUTATIONS = ("valid", "dtype", "rank", "dim", "batch0", "big-batch", "mixed-batch", "strided", "transposed",
             "sparse", "requires-grad", "meta", "nan-inf", "id-high", "id-negative", "id-huge", "id-int32",
             "id-float", "count", "not-a-tensor")
DTYPES = (torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int16, torch.uint8, torch.bool,
          torch.float32, torch.int64)


@pytest.fixture(scope="module", params=names() if MODELS == "all" else MODELS.split(","))
def subject(request) -> tuple[str, torch.nn.Module, Any, int]:
    model = create(request.param, scale=0.01, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None)
    rows = max(lim.rows for lims in compiled.manifest.id_checks.ids.values() for lim in lims)
    return request.param, model, compiled, rows


def _mutate(inputs: list[Any], rows: int, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(MUTATIONS))
    i = data.draw(st.integers(0, len(inputs) - 1))
    x = inputs[i]
    ids = [j for j, t in enumerate(inputs) if t.dtype == torch.int64]
    floats = [j for j, t in enumerate(inputs) if t.is_floating_point()]
    if kind == "dtype":
        inputs[i] = x.to(data.draw(st.sampled_from(DTYPES)))
    elif kind == "rank":
        inputs[i] = x.unsqueeze(-1) if data.draw(st.booleans()) or x.dim() == 1 else x.flatten()
    elif kind == "dim" and x.dim() > 1:
        axis = data.draw(st.integers(1, x.dim() - 1))
        size = data.draw(st.integers(0, 2 * x.shape[axis] + 1))
        inputs[i] = torch.zeros(*x.shape[:axis], size, *x.shape[axis + 1:], dtype=x.dtype)
    elif kind == "batch0":
        for j, t in enumerate(inputs):
            inputs[j] = t[:0]
    elif kind == "big-batch":
        n = data.draw(st.sampled_from([1000, 4097]))
        for j, t in enumerate(inputs):
            inputs[j] = t.repeat(n // t.shape[0] + 1, *([1] * (t.dim() - 1)))[:n].clone()
    elif kind == "mixed-batch" and len(inputs) > 1:
        inputs[i] = torch.cat([x, x[:1]])
    elif kind == "strided":
        inputs[i] = torch.stack([x, x], dim=-1)[..., 0]  # same values, every other element
    elif kind == "transposed" and x.dim() > 1:
        inputs[i] = x.transpose(0, 1).contiguous().transpose(0, 1)
    elif kind == "sparse":
        inputs[i] = x.to_sparse()
    elif kind == "requires-grad" and floats:
        inputs[floats[0]] = inputs[floats[0]].clone().requires_grad_(True)
    elif kind == "meta":
        inputs[i] = x.to("meta")
    elif kind == "nan-inf" and floats:
        t = inputs[floats[0]].clone()
        flat = t.view(-1)
        for _ in range(data.draw(st.integers(1, 3))):
            flat[data.draw(st.integers(0, flat.numel() - 1))] = data.draw(
                st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        inputs[floats[0]] = t
    elif kind.startswith("id-") and ids:
        j = data.draw(st.sampled_from(ids))
        t = inputs[j].clone()
        flat = t.view(-1)
        k = data.draw(st.integers(0, flat.numel() - 1))
        if kind == "id-high":
            flat[k] = rows + data.draw(st.integers(0, 3))
        elif kind == "id-negative":
            flat[k] = data.draw(st.sampled_from([-1, -2, -rows, -rows - 1]))
        elif kind == "id-huge":
            flat[k] = data.draw(st.sampled_from([2**62, -2**62, 2**31, 2**32 + 1]))
        inputs[j] = t.int() if kind == "id-int32" else t.float() if kind == "id-float" else t
    elif kind == "count":
        if data.draw(st.booleans()):
            inputs.append(inputs[0])
        else:
            inputs.pop()
    elif kind == "not-a-tensor":
        inputs[i] = data.draw(st.sampled_from([None, "ids", 3, x.tolist()]))
    else:
        return "valid"
    return kind


def _outcome(model, compiled, inputs: list[Any]) -> str:
    try:
        with torch.no_grad():
            want = model(*inputs)
        eager_error = None
    except Exception as e:  # noqa: BLE001 - eager's verdict, whatever it raises
        want, eager_error = None, e
    try:
        got = compiled(*inputs)
    except ValueError:
        return "refused: ValueError" + (" (eager raises too)" if eager_error else " (eager accepts)")
    assert eager_error is None, f"recc accepted what eager refuses ({type(eager_error).__name__}: {eager_error})"
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    return "same as eager"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_bad_inputs_are_refused_or_computed_as_eager(subject, data) -> None:
    name, model, compiled, rows = subject
    batch = data.draw(st.sampled_from([1, 2, 7, 64]))
    inputs = list(model.example_inputs(batch, seed=data.draw(st.integers(0, 1000))))
    kind = _mutate(inputs, rows, data)
    outcome = _outcome(model, compiled, inputs)
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"test": name, "damage": kind, "outcome": outcome}) + "\n")
