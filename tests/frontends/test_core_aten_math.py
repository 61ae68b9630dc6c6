"""Core ATen math ops (torch frontend -> IR -> interpreter and TVM build) equal eager PyTorch on IEEE
special values (NaN, +-inf, +-0, halves, near +-1) and on integer edge cases (negative operands, shifts
by the type width or more). float32: rtol 1e-4 / atol 1e-5, NaN where torch has NaN; integers exact."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from recc.compiler.interpreter import interpret
from recc.frontends.torch_export import capture
from recc.frontends.torch_export.capture import UnsupportedOpError

NAN, INF = float("nan"), float("inf")
X = torch.tensor([NAN, INF, -INF, 0., -0., 0.5, 1.5, 2.5, -2.5, -0.5, 1e-8, -1e-8, 0.3, 0.999, -0.999, 1., -1.,
                  3.7, -3.7, 100.])
Y = torch.tensor([3., 3., -2., -2., 0.1, 0., -0., INF, 0.7, 1., -1, 2, 0.5, 0.25, 3, -4, 5, 1e-3, 7, NAN])
I = torch.tensor([5, -5, 7, -7, 0, 3, 123456789, -1])
J = torch.tensor([3, 3, -2, -2, 5, 7, 1000, 2])
M = torch.tensor([[1., NAN, 3., NAN, -1.], [2., 2., -INF, 0., 5.], [INF, 1., INF, 4., 4.], [0.5, -0.5, 0., 7., 7.]])

SX, SI, SS = torch.randn(4, 5), torch.tensor([[0, 1, 2, 0, 3], [3, 2, 1, 0, 0]]), torch.randn(3, 6)

UNARY = ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "floor", "ceil",
         "round", "trunc", "sign", "sgn", "log1p", "expm1", "log2", "log10", "erfinv", "isnan", "isinf", "isfinite"]
CASES: dict[str, tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]] = {
    **{name: (getattr(torch, name), (X,)) for name in UNARY},
    **{f"{name}_float": (getattr(torch, name), (X, Y)) for name in ("remainder", "fmod", "floor_divide", "atan2")},
    **{f"{name}_int": (getattr(torch, name), (I, J)) for name in (
        "remainder", "fmod", "floor_divide", "bitwise_and", "bitwise_or", "bitwise_xor")},
    "div_trunc_int": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), (I, J)),
    "div_trunc_float": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), (X, Y)),
    "div_floor_float": (lambda a, b: torch.div(a, b, rounding_mode="floor"), (X, Y)),
    "left_shift": (lambda a, b: a << b, (I, torch.tensor([1, 2, 63, 64, 70, 0, 3, -1]))),
    "right_shift": (lambda a, b: a >> b, (I, torch.tensor([1, 2, 63, 64, 70, 0, 3, 1]))),
    "bitwise_not": (torch.bitwise_not, (I,)),
    "logical_and": (torch.logical_and, (X, Y)),
    "logical_xor": (torch.logical_xor, (X, Y)),
    "argmax": (lambda a: torch.argmax(a, 1), (M,)),
    "argmin_keepdim": (lambda a: torch.argmin(a, 0, keepdim=True), (M,)),
    "argmax_flat": (torch.argmax, (M,)),
    "prod": (lambda a: torch.prod(a, 1), (M,)),
    "prod_int32": (torch.prod, (I[:4].to(torch.int32),)),
    "any": (lambda a: torch.any(a, 1), (M,)),
    "all": (lambda a: torch.all(a > 0, 0), (M,)),
    "cumsum": (lambda a: torch.cumsum(a, 1), (M,)),
    "cumprod": (lambda a: torch.cumprod(a, 0), (M,)),
    "cumsum_int32": (lambda a: torch.cumsum(a, 0), (I.to(torch.int32),)),
    "var": (lambda a: torch.var(a, 1), (torch.randn(4, 6, generator=torch.Generator().manual_seed(1)),)),
    "std_all": (lambda a: torch.std(a, (0, 1), correction=0), (torch.randn(4, 6),)),
    "layer_norm": (lambda a: torch.nn.functional.layer_norm(a, (6,)), (torch.randn(4, 6),)),
    "flip": (lambda a: torch.flip(a, (0, 1)), (M,)),
    "pad": (lambda a: torch.nn.functional.pad(a, (1, 2, -1, 0), value=3.0), (M,)),
    "round_decimals": (lambda a: torch.round(a, decimals=2), (torch.randn(10) * 10,)),
    "max_dim_values": (lambda a: torch.max(a, 1).values, (M,)),
    "min_dim_indices": (lambda a: torch.min(a, 0, keepdim=True).indices, (M,)),
    "clamp_tensor": (lambda a, b: torch.clamp(a, min=b), (M, torch.tensor([0., 5., NAN, 1., -INF]))),
    "pow_scalar_base": (lambda a: torch.pow(2.0, a), (X,)),
    "fill": (lambda a: torch.fill(a, 3.0), (M,)),
    "diagonal": (lambda a: torch.diagonal(a, -1, 1, 0), (M,)),
    "diag": (lambda a: torch.diag(a, 1), (M,)),
    "pow_int": (torch.pow, (I, torch.tensor([3, 2, 0, 5, 7, 1, 2, 62]))),
    "square_int": (torch.square, (I,)),
    "elu": (torch.nn.functional.elu, (X,)),
    "selu": (torch.nn.functional.selu, (X,)),
    "linear_one_sample": (lambda a, w, b: torch.nn.functional.linear(a, w, b), (X[5:9], torch.randn(3, 4),
                                                                                torch.randn(3))),
    "matmul_vector_matrix": (torch.matmul, (X[5:9], torch.randn(2, 4, 3))),
    "matmul_matrix_vector": (torch.matmul, (torch.randn(2, 3, 4), X[5:9])),
    "matmul_dot": (torch.matmul, (X[5:9], X[13:17])),
    "hardsigmoid_0d": (torch.nn.functional.hardsigmoid, (torch.tensor(0.7),)),
    "threshold_0d": (lambda a: torch.nn.functional.threshold(a, 0.5, 2.0), (torch.tensor(0.3),)),
    "cross_entropy": (torch.nn.functional.cross_entropy, (torch.randn(2, 3), torch.tensor([0, 2]))),
    "sum_of_bools": (lambda a: (a > 0).sum(), (X,)),
    "softmax_float64": (lambda a: torch.softmax(a, 0, dtype=torch.float64), (torch.randn(5),)),
    "index_two_input_axes": (lambda a, i, j: a[i, j], (SX, torch.tensor([0, -1, 3]), torch.tensor([1, 4, -5]))),
    "sum_0d": (lambda a: a.sum(0) + a.amax(), (torch.tensor(0.7),)),
    "empty_then_filled": (lambda a: torch.empty(2, 5).copy_(a[:2]) * 2, (SX,)),
    "index_select_0d": (lambda a, i: torch.index_select(a, 0, i), (torch.tensor(0.7), torch.tensor([0]))),
}


def _put(a: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    a = a.clone()
    a[i] = v
    return a


def _add_at_columns(a: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    a = a.clone()
    a[:, i] += v
    return a


def _put_mask_after_an_axis(a: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    a = a.clone()
    a[:, m] = v
    return a


CASES.update({
    "scatter": (lambda a, i, s: torch.scatter(a, 0, i, s), (SX, SI, SS)),
    "scatter_value": (lambda a, i: torch.scatter(a, 1, i, 2.5), (SX, SI[:, :3])),
    "scatter_add": (lambda a, i, s: torch.scatter_add(a, 0, i, s), (SX, SI, SS)),
    "scatter_amax_exclude_self": (lambda a, i, s: torch.scatter_reduce(a, 0, i, s, "amax", include_self=False),
                                  (SX, SI, SS)),
    "scatter_mean": (lambda a, i, s: torch.scatter_reduce(a, 0, i, s, "mean"), (SX, SI, SS)),
    "index_put_rows_negative_id": (_put, (SX, torch.tensor([2, -1, 0]), torch.randn(3, 5))),
    "index_put_accumulate_columns": (_add_at_columns, (SX, torch.tensor([0, 4, 4]), torch.randn(4, 3))),
    "index_put_two_axes": (lambda a, i, j, v: torch.index_put(a, (i, j), v, accumulate=True),
                           (SX, torch.tensor([2, -1, 0]), torch.tensor([1, 1, 4]), torch.tensor([1., 2., 3.]))),
})


F = torch.nn.functional
CASES.update({
    "conv1d_stride_padding_bias": (lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
                                   (torch.randn(2, 4, 9), torch.randn(6, 4, 3), torch.randn(6))),
    "conv2d_groups_dilation": (lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(2, 1), dilation=2, groups=2),
                               (torch.randn(2, 4, 7, 8), torch.randn(6, 2, 3, 2))),
    "conv3d": (F.conv3d, (torch.randn(1, 2, 4, 5, 3), torch.randn(3, 2, 2, 2, 2))),
    "conv1d_unbatched": (F.conv1d, (torch.randn(4, 9), torch.randn(6, 4, 3))),
    "group_norm": (lambda x, w, b: F.group_norm(x, 2, w, b), (torch.randn(3, 4, 5), torch.randn(4), torch.randn(4))),
    "scatter_amin_int_exclude_self": (lambda a, i, s: torch.scatter_reduce(a, 0, i, s, "amin", include_self=False),
                                      (I.reshape(2, 4), torch.tensor([[1, 0, 1, 1]]), J[:4].reshape(1, 4))),
    "argmin_of_the_dtype_maximum": (lambda a: torch.argmin(a, 1), (torch.tensor([[2**63 - 1, 2**63 - 1], [3, 1]]),)),
    "argmax_of_all_minus_inf": (lambda a: torch.argmax(a, 1), (torch.tensor([[-INF, -INF, -INF], [1., 2., 0.]]),)),
    "embedding_0d_ids": (lambda i, w: F.embedding(i, w), (torch.tensor(2), torch.randn(5, 3))),
    "max_pool2d_nan_ceil_dilation": (lambda a: F.max_pool2d(a, (2, 3), 2, 1, dilation=2, ceil_mode=True),
                                     (torch.tensor([[[[NAN, 1., 2., 3.], [4., INF, 6., 7.], [8., 9., -1., 0.]]]]),)),
    "avg_pool2d_ceil_without_pad": (lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                                    (torch.randn(2, 3, 7, 8),)),
    "avg_pool1d_divisor_int": (lambda a: F.avg_pool2d(a, 2, divisor_override=3), (torch.randint(-9, 9, (1, 2, 4, 5)),)),
    "max_pool3d": (lambda a: F.max_pool3d(a, 2), (torch.randn(1, 2, 4, 5, 3),)),
    "conv2d_same": (lambda x, w: F.conv2d(x, w, padding="same"), (torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))),
    "scatter_mean_int_floors": (lambda a, i, s: torch.scatter_reduce(a, 0, i, s, "mean"),
                                (torch.tensor([10, -7, 5, 0]), torch.tensor([0, 0, 1, 1, 1, 3]),
                                 torch.tensor([3, 4, -8, 1, 1, -3]))),
    "as_strided_overlapping": (lambda a: torch.as_strided(a, (3, 4), (2, 1), 1), (torch.randn(3, 5),)),
    "masked_scatter_broadcast_mask": (lambda a, m, s: a.masked_scatter(m, s),
                                      (torch.randn(3, 4), torch.tensor([True, False, False, True]),
                                       torch.randn(2, 3))),
    "index_put_mask_rows": (lambda a, m, v: torch.index_put(a, (m,), v), (SX, torch.tensor([1, 0, 1, 1]) > 0,
                                                                         torch.randn(3, 5))),
    "index_put_mask_broadcast_accumulate": (lambda a, m, v: torch.index_put(a, (m,), v, accumulate=True),
                                            (SX, torch.tensor([1, 0, 1, 0]) > 0, torch.randn(5))),
    "index_put_mask_2d_after_an_axis": (_put_mask_after_an_axis,
                                        (torch.randn(2, 3, 4), torch.eye(3, 4) > 0, torch.randn(2, 3))),
    "sdpa_causal_rectangular": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                (torch.randn(2, 3, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 4))),
    "sdpa_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 (torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8))),
    # through torch's own decompositions (no recc converter): adaptive pools, upsampling, grid_sample
    "adaptive_avg_pool2d_uneven": (lambda a: F.adaptive_avg_pool2d(a, (3, 2)), (torch.randn(2, 3, 7, 5),)),
    "interpolate_bilinear": (lambda a: F.interpolate(a, scale_factor=1.7, mode="bilinear"), (torch.randn(1, 2, 4, 5),)),
    "grid_sample_zeros_outside": (lambda a, g: F.grid_sample(a, g, align_corners=False),
                                  (torch.randn(1, 2, 4, 5), torch.rand(1, 3, 6, 2) * 2.6 - 1.3)),
    **{f"cdist_p{p}": (lambda a, b, p=p: torch.cdist(a, b, p=p), (torch.randn(2, 4, 3), torch.randn(2, 5, 3)))
       for p in (0.0, 1.0, 2.0, 3.0, float("inf"))},
    "to_int16_wraps": (lambda a: a.to(torch.int16) * 3 + 1,
                       (torch.tensor([[40000, -40000, 32767], [5, -7, 1 << 40]]),)),
})


class Wrap(torch.nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def assert_matches(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if want.is_floating_point():
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    else:
        assert torch.equal(got, want), (got, want)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_eager(name: str) -> None:
    fn, inputs = CASES[name]
    graph = capture(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    got = interpret(graph, [t.numpy() for t in inputs])[0]
    assert_matches(torch.from_numpy(np.asarray(got)), fn(*inputs))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name: str) -> None:
    import recc

    fn, inputs = CASES[name]
    compiled = recc.compile(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    assert_matches(compiled(*inputs), fn(*inputs))


def test_integer_division_by_zero_raises_in_the_interpreter_as_in_torch() -> None:
    fn = torch.floor_divide
    graph = capture(Wrap(fn), (I, J), dynamic_shapes=({}, {}))
    with pytest.raises(ZeroDivisionError):
        interpret(graph, [I.numpy(), np.zeros_like(J.numpy())])


@pytest.mark.slow
def test_an_index_out_of_range_on_any_axis_is_refused_at_run_time() -> None:
    """x[i, j] reads one flat position; a j past its axis must not alias the next row."""
    import recc

    fn, inputs = CASES["index_two_input_axes"]
    compiled = recc.compile(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    for bad in (torch.tensor([0, 1, 5]), torch.tensor([0, 1, -6])):
        with pytest.raises(ValueError, match="out of range"):
            compiled(inputs[0], inputs[1], bad)


def test_as_strided_of_a_view_is_refused() -> None:
    """A non-contiguous input of as_strided reads storage the IR value does not hold: a clear refusal."""
    with pytest.raises(UnsupportedOpError, match="not contiguous"):
        capture(Wrap(lambda a: torch.as_strided(a.t(), (2, 2), (1, 2))), (SX,), dynamic_shapes=({},))


@pytest.mark.slow
def test_masked_scatter_with_too_few_source_elements_is_refused_at_run_time() -> None:
    import recc

    fn, inputs = CASES["masked_scatter_broadcast_mask"]
    compiled = recc.compile(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    with pytest.raises(ValueError, match="out of range"):
        compiled(inputs[0], torch.ones(4, dtype=torch.bool), inputs[2])


def test_index_put_mask_with_a_different_count_of_rows_is_refused_as_in_torch() -> None:
    fn, inputs = CASES["index_put_mask_rows"]
    graph = capture(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    with pytest.raises(IndexError, match="out of bounds"):
        interpret(graph, [inputs[0].numpy(), np.ones(4, bool), inputs[2].numpy()])


@pytest.mark.slow
def test_scatter_index_out_of_range_is_refused_at_run_time() -> None:
    import recc

    fn, inputs = CASES["scatter_add"]
    compiled = recc.compile(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    with pytest.raises(ValueError, match="out of range"):
        compiled(SX, SI + 4, SS)
