"""The OpInfo harness's verdicts can fail: a wrong answer, one wrong only off the example, a crash and a
refusal each come out as such (no TVM build: the "compiled" model here is a stand-in)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from recc.bench.opinfo_cases import SampleResult, check_sample, compare, fresh_inputs, is_random, op_status
from recc.frontends.torch_export import UnsupportedOpError


class Sample:
    """The parts of OpInfo's SampleInput the harness reads."""

    def __init__(self, input: Any, *args: Any, **kwargs: Any) -> None:
        self.input, self.args, self.kwargs = input, args, kwargs


def _verdict(compile_fn: Any, fn: Any = torch.add, sample: Sample | None = None) -> SampleResult:
    sample = sample or Sample(torch.randn(4, 3), torch.randn(4, 3))
    return check_sample(fn, sample, "test", compile_fn=compile_fn)


def test_compare_accepts_equal_and_rejects_wrong_values() -> None:
    x = torch.randn(5, 7)
    assert compare([x], x.clone()) == (None, 0.0)
    assert compare([x], x + 5e-6)[0] is None  # within atol 1e-5
    problem, err = compare([x], x + 1e-3)
    assert problem and "beyond atol" in problem and math.isclose(err, 1e-3, rel_tol=1e-3)
    assert "torch.float64 [5, 7], eager torch.float32" in compare([x], x.double())[0]
    assert "[7, 5]" in compare([x], x.t().contiguous())[0]
    assert "outputs expected" in compare([x, x], x)[0]


def test_compare_nan_inf_and_integers() -> None:
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")])
    assert compare([x], x.clone())[0] is None
    assert "NaN" in compare([x], torch.tensor([1.0, 0.0, float("inf"), -float("inf")]))[0]
    assert "inf" in compare([x], torch.tensor([1.0, float("nan"), -float("inf"), -float("inf")]))[0]
    ints = torch.tensor([3, 1 << 40, -2])
    assert compare([ints], ints.clone())[0] is None
    assert "1 of 3 values differ" in compare([ints], ints + torch.tensor([0, 1, 0]))[0]  # exact, no tolerance
    mask = torch.tensor([True, False])
    assert "differ" in compare([mask], ~mask)[0]


def test_a_wrong_compiled_model_is_wrong() -> None:
    result = _verdict(lambda module, inputs: (lambda *xs: module(*xs) + 1e-3))
    assert result.status == "wrong" and result.stage == "compare" and result.max_abs_error == pytest.approx(1e-3, 1e-3)


def test_a_model_right_only_on_the_example_is_wrong_on_the_fresh_input() -> None:
    def memorize(module: Any, inputs: Any) -> Any:
        answer = module(*inputs)
        return lambda *xs: answer

    result = _verdict(memorize)
    assert result.status == "wrong" and result.stage == "compare-fresh", result


def test_errors_sort_into_refused_and_crashed() -> None:
    def refuse(module: Any, inputs: Any) -> Any:
        raise UnsupportedOpError("unsupported op add.Tensor (from x.py:1: y); recc's torch frontend does not ...")

    def crash(module: Any, inputs: Any) -> Any:
        raise KeyError("oops")

    refused, crashed = _verdict(refuse), _verdict(crash)
    assert refused.status == "refused" and refused.reason.startswith("unsupported op add.Tensor;"), refused
    assert crashed.status == "crashed" and "KeyError" in crashed.reason, crashed
    # a ValueError raised outside recc's code (here: by this test) is not a deliberate refusal
    assert _verdict(lambda m, x: (_ for _ in ()).throw(ValueError("no"))).status == "crashed"
    running = _verdict(lambda m, x: (lambda *xs: xs[0].reshape(7)))
    assert running.status == "crashed" and running.stage == "run", running


def test_right_answers_pass_and_samples_are_sorted_out() -> None:
    assert _verdict(lambda module, inputs: module).status == "passed"
    cat = Sample([torch.randn(2, 3), torch.randn(4, 3)], dim=0)  # tensors inside a list are inputs too
    assert _verdict(lambda module, inputs: module, torch.cat, cat).status == "passed"
    assert _verdict(lambda m, x: m, torch.add, Sample(torch.randn(0, 3), 1.0)).status == "skipped"
    assert _verdict(lambda m, x: m, torch.nn.functional.dropout, Sample(torch.randn(8), 0.5, True)
                    ).status == "excluded"  # differs run to run
    assert _verdict(lambda m, x: m, torch.Tensor.tolist, Sample(torch.randn(3))).status == "not exportable"
    assert op_status([SampleResult("passed"), SampleResult("refused", "r")]) == ("refused", "r")
    assert op_status([SampleResult("crashed", "c"), SampleResult("wrong", "w")]) == ("wrong", "w")


def test_fresh_inputs_keep_shapes_dtypes_and_ranges() -> None:
    ids = torch.tensor([[2, 5], [3, 4]])
    x = torch.tensor([0.5, float("nan"), 2.0])
    new_ids, new_x = fresh_inputs((ids, x), seed=1)
    assert new_ids.dtype == torch.int64 and new_ids.shape == ids.shape and int(new_ids.min()) >= 2
    assert int(new_ids.max()) <= 5 and math.isnan(new_x[1]) and 0.5 <= float(new_x[0]) <= 2.0


def test_random_ops_are_named() -> None:
    class Op:
        def __init__(self, name: str) -> None:
            self.name = name

    assert all(is_random(Op(n)) for n in ("normal", "nn.functional.dropout", "randn_like", "new_empty"))
    assert not any(is_random(Op(n)) for n in ("nn.functional.normalize", "add", "rad2deg"))


def test_tie_comparator_accepts_another_tie_order_and_nothing_else() -> None:
    from types import SimpleNamespace

    from recc.bench.opinfo_ties import tie_comparator

    x = torch.tensor([[3., 1., 3., float("nan"), 1.]])
    values, positions = torch.sort(x, dim=1, stable=True)
    compare = tie_comparator("sort", SimpleNamespace(args=(1,), kwargs={}))
    other = positions.clone()
    other[0, [0, 1]] = other[0, [1, 0]]  # the two 1.0s swapped: an equally valid unstable order
    assert compare([values, positions], (values, other), (x,)) is None
    wrong = positions.clone()
    wrong[0, [1, 2]] = wrong[0, [2, 1]]  # a 1.0 and a 3.0 swapped
    assert "differ" in compare([values, positions], (values, wrong), (x,))
    repeated = positions.clone()
    repeated[0, 1] = repeated[0, 0]
    assert "repeat" in compare([values, positions], (values, repeated), (x,))
    assert tie_comparator("sort", SimpleNamespace(args=(1,), kwargs={"stable": True})) is None
    assert tie_comparator("add", SimpleNamespace(args=(), kwargs={})) is None
