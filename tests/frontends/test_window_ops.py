"""Window ops (transposed convolution, max pooling's indices, adaptive pooling, interpolation): the torch
frontend -> IR -> interpreter and TVM build equal eager PyTorch on seeded random inputs with NaN and inf
planted where the op can see them. float32: rtol 1e-4 / atol 1e-5, NaN where torch has NaN; integers and
indices exact."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from recc.compiler.interpreter import interpret
from recc.frontends.torch_export import capture
from tests.frontends.test_core_aten_math import Wrap, assert_matches

F = torch.nn.functional
NAN, INF = float("nan"), float("inf")


def _randn(*shape: int, seed: int = 0, specials: int = 0) -> torch.Tensor:
    """Seeded normal values, `specials` of them replaced by NaN, inf and -inf in turn (at seeded places)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g)
    flat = t.view(-1)
    where = torch.randperm(flat.numel(), generator=g)[:specials]
    for i, at in enumerate(where.tolist()):
        flat[at] = (NAN, INF, -INF)[i % 3]
    return t


def _randint(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(-9, 10, shape, generator=torch.Generator().manual_seed(seed))


CASES: dict[str, tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]] = {
    "conv_transpose1d_stride_padding_bias": (
        lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
        (_randn(2, 4, 7, seed=1, specials=2), _randn(4, 3, 3, seed=2), _randn(3, seed=3))),
    "conv_transpose2d_groups_dilation": (
        lambda x, w: F.conv_transpose2d(x, w, stride=(2, 3), padding=(1, 2), output_padding=(1, 0), groups=2,
                                        dilation=(1, 2)),
        (_randn(2, 4, 5, 6, seed=4, specials=3), _randn(4, 3, 3, 2, seed=5))),
    "conv_transpose2d_padding_past_the_kernel": (
        lambda x, w: F.conv_transpose2d(x, w, stride=3, padding=3),
        (_randn(1, 2, 5, 5, seed=6), _randn(2, 2, 2, 2, seed=7))),
    "conv_transpose3d": (
        lambda x, w, b: F.conv_transpose3d(x, w, b, stride=(1, 2, 2), padding=(0, 1, 0), output_padding=(0, 1, 1)),
        (_randn(1, 3, 3, 4, 2, seed=8, specials=2), _randn(3, 2, 2, 3, 2, seed=9), _randn(2, seed=10))),
    "conv_transpose2d_int64": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, groups=3),
        (_randint(2, 3, 4, 3, seed=11), _randint(3, 2, 3, 3, seed=12))),
    "conv_transpose1d_unbatched": (
        lambda x, w: F.conv_transpose1d(x, w, stride=3, dilation=2),
        (_randn(2, 6, seed=13), _randn(2, 5, 2, seed=14))),
}

# a plane with ties, NaN (two in one window: torch reports the last) and a window of only -inf
PLANE = torch.tensor([[[[1., 3., 3., NAN, 0., NAN], [-INF, -INF, 2., 2., NAN, -1.], [-INF, -INF, 7., NAN, 4., 4.],
                        [-INF, -INF, 2., 3., 4., 5.]]]])
CASES.update({
    "max_pool2d_indices_ties_nan_inf": (lambda a: F.max_pool2d(a, 2, return_indices=True), (PLANE,)),
    "max_pool2d_indices_padding_ceil_dilation": (
        lambda a: F.max_pool2d(a, (2, 3), (2, 1), (1, 1), dilation=(1, 2), ceil_mode=True, return_indices=True),
        (_randn(2, 3, 7, 8, seed=20, specials=9),)),
    "max_pool1d_indices": (lambda a: F.max_pool1d(a, 3, 2, 1, return_indices=True), (_randn(2, 3, 10, seed=21,
                                                                                            specials=4),)),
    "max_pool3d_indices": (lambda a: F.max_pool3d(a, (2, 2, 3), (1, 2, 2), (1, 0, 1), return_indices=True),
                           (_randn(1, 2, 4, 5, 6, seed=22, specials=6),)),
    "max_pool2d_indices_int64_unbatched": (lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True),
                                           (_randint(3, 6, 7, seed=23),)),
    "adaptive_avg_pool1d": (lambda a: F.adaptive_avg_pool1d(a, 4), (_randn(2, 3, 10, seed=24, specials=2),)),
    "adaptive_avg_pool2d_growing": (lambda a: F.adaptive_avg_pool2d(a, (3, 7)), (_randn(2, 3, 7, 5, seed=25,
                                                                                        specials=3),)),
    "adaptive_avg_pool3d_unbatched": (lambda a: F.adaptive_avg_pool3d(a, (2, 3, 1)), (_randn(2, 5, 4, 3, seed=26),)),
    "adaptive_max_pool1d": (lambda a: F.adaptive_max_pool1d(a, 3, return_indices=True), (_randn(2, 3, 8, seed=27,
                                                                                                  specials=3),)),
    "adaptive_max_pool2d_ties_nan": (lambda a: F.adaptive_max_pool2d(a, (3, 4), return_indices=True), (PLANE,)),
    "adaptive_max_pool3d": (lambda a: F.adaptive_max_pool3d(a, (2, 3, 4), return_indices=True),
                            (_randn(2, 2, 5, 4, 7, seed=28, specials=6),)),
    "interpolate_area": (lambda a: F.interpolate(a, size=(3, 4), mode="area"), (_randn(1, 2, 7, 9, seed=30,
                                                                                       specials=2),)),
})


def _interpolate(**kwargs: object) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda a: F.interpolate(a, **kwargs)  # type: ignore[arg-type]


IMAGE = _randn(2, 3, 5, 7, seed=31, specials=5)
CASES.update({
    "bilinear_size": (_interpolate(size=(8, 4), mode="bilinear"), (IMAGE,)),
    "bilinear_align_corners": (_interpolate(size=(9, 7), mode="bilinear", align_corners=True), (IMAGE,)),
    "bilinear_scale_factors": (_interpolate(scale_factor=(1.7, 0.6), mode="bilinear"), (IMAGE,)),
    "bilinear_scale_align_corners": (_interpolate(scale_factor=2.5, mode="bilinear", align_corners=True), (IMAGE,)),
    "bilinear_recomputed_scale": (_interpolate(scale_factor=1.3, mode="bilinear", recompute_scale_factor=True),
                                  (IMAGE,)),
    "nearest2d_size": (_interpolate(size=(11, 3), mode="nearest"), (IMAGE,)),
    "nearest2d_scale_two": (_interpolate(scale_factor=2.0, mode="nearest"), (IMAGE,)),
    "nearest1d_scale_uint8": (_interpolate(scale_factor=1.5, mode="nearest"), ((_randint(2, 3, 7, seed=32) + 9).to(
        torch.uint8),)),
    "nearest1d": (_interpolate(scale_factor=1.6, mode="nearest"), (_randn(2, 3, 7, seed=33, specials=2),)),
    "nearest3d": (_interpolate(size=(3, 5, 2), mode="nearest"), (_randn(1, 2, 2, 3, 4, seed=34, specials=2),)),
    "nearest_exact2d": (_interpolate(size=(6, 9), mode="nearest-exact"), (IMAGE,)),
    "linear1d_align_corners": (_interpolate(size=11, mode="linear", align_corners=True),
                               (_randn(2, 3, 6, seed=35, specials=2),)),
    "trilinear": (_interpolate(scale_factor=(1.5, 2.0, 0.5), mode="trilinear"), (_randn(1, 2, 3, 4, 6, seed=36,
                                                                                        specials=3),)),
    "bicubic": (_interpolate(size=(7, 9), mode="bicubic", align_corners=False), (IMAGE,)),
})


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def assert_all_match(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_matches(g, w)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_eager(name: str) -> None:
    fn, inputs = CASES[name]
    graph = capture(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    got = interpret(graph, [t.numpy() for t in inputs])
    assert_all_match(tuple(torch.from_numpy(np.asarray(g)) for g in got), _as_tuple(fn(*inputs)))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name: str) -> None:
    import recc

    fn, inputs = CASES[name]
    compiled = recc.compile(Wrap(fn), inputs, dynamic_shapes=tuple({} for _ in inputs))
    assert_all_match(_as_tuple(compiled(*inputs)), _as_tuple(fn(*inputs)))
    # NaN and inf in the data only: a transposed convolution's compiled form is exact for finite weights
    fresh = tuple(_randn(*t.shape, seed=99 + i, specials=2 * (i == 0)) if t.is_floating_point()
                  else _randint(*t.shape, seed=99 + i).abs().to(t.dtype) if t.dtype == torch.uint8
                  else _randint(*t.shape, seed=99 + i) for i, t in enumerate(inputs))
    assert_all_match(_as_tuple(compiled(*fresh)), _as_tuple(fn(*fresh)))


@pytest.mark.slow
def test_a_transposed_convolution_with_nan_and_inf_weights_matches_eager() -> None:
    """NaN / inf in a weight reach only the outputs torch's sum of real (input, tap) pairs reaches: as a
    parameter (compile-time) and as an input (run time: the exact form is always used for it)."""
    import recc

    layer = torch.nn.ConvTranspose2d(2, 3, (3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2))
    with torch.no_grad():
        layer.weight[0, 1, 2, 0], layer.weight[1, 2, 0, 1], layer.weight[1, 0, 1, 1] = NAN, INF, -INF
    x = _randn(2, 2, 4, 3, seed=21)
    assert_matches(recc.compile(layer, (x,), dynamic_shapes=({},))(x), layer(x))
    fn = lambda a, w: F.conv_transpose2d(a, w, stride=2, groups=2)  # noqa: E731
    w = _randn(4, 1, 3, 3, seed=22, specials=3)
    compiled = recc.compile(Wrap(fn), (x.repeat(1, 2, 1, 1), w), dynamic_shapes=({}, {}))
    for seed in (23, 24):
        xs = (_randn(2, 4, 4, 3, seed=seed), _randn(4, 1, 3, 3, seed=seed + 10, specials=seed - 21))
        assert_matches(compiled(*xs), fn(*xs))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["conv_transpose2d_groups_dilation", "max_pool3d_indices", "adaptive_max_pool3d",
                                  "adaptive_avg_pool1d", "bilinear_scale_factors"])
def test_compiled_with_a_dynamic_batch(name: str) -> None:
    import recc

    fn, inputs = CASES[name]
    compiled = recc.compile(Wrap(fn), inputs)  # dim 0 of the data is the symbolic batch
    other = (_randn(5, *inputs[0].shape[1:], seed=7, specials=3),) + inputs[1:]
    assert_all_match(_as_tuple(compiled(*other)), _as_tuple(fn(*other)))
