"""One loaded artifact called from many Python threads at once: every caller gets its own correct result
(each thread runs on a VM of its own), and no later call overwrites an earlier call's output."""

from __future__ import annotations

import threading

import pytest
import torch

import recc
from recc.models import create
from tests.conftest import FP32_ATOL, max_abs_error


@pytest.mark.parametrize("name", ["dlrm-rmc1", "din"])
def test_concurrent_callers_each_get_their_own_result(name: str) -> None:
    model = create(name, scale=0.01, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None)
    batches = [1, 3, 64, 1, 17, 64, 1, 5]  # batch 1 takes its own function; the others "main"
    inputs = [model.example_inputs(b, seed=10 + i) for i, b in enumerate(batches)]
    with torch.no_grad():
        want = [model(*x) for x in inputs]
    errors: list[str] = []
    start = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        start.wait()  # all threads call at once
        kept = [compiled(*inputs[i]) for _ in range(30)]
        for call, got in enumerate(kept):  # checked after all calls: earlier outputs were not overwritten
            if got.shape != want[i].shape or max_abs_error(got, want[i]) > FP32_ATOL:
                errors.append(f"thread {i} call {call}: wrong result")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def test_each_thread_has_its_own_vm_and_keeps_it() -> None:
    model = create("ncf", scale=0.01, seed=0)
    compiled = recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None)
    here = compiled._function_for(None)
    assert compiled._function_for(None) is here  # made once per thread, then reused
    seen = []
    thread = threading.Thread(target=lambda: seen.append(compiled._function_for(None)))
    thread.start()
    thread.join()
    assert seen and seen[0] is not here
