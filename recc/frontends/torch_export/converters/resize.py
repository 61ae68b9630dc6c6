"""Interpolation (upsample_nearest*d, _upsample_nearest_exact*d, upsample_linear1d / bilinear2d / trilinear3d;
recc's capture keeps them whole, since torch's decompositions of them spread NaN differently from its
kernels), one spatial axis after another, innermost first, as gathers with constant indices and weighted sums of the
gathered rows: exactly the taps and weights torch's CPU kernels compute (in the data's float type), so an
output reads only the inputs torch reads and NaN and inf spread as they do in torch. `area` is adaptive
average pooling (dense.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.frontends.torch_export.converters.context import ConversionError, Ctx, converts


def _scale(n_in: int, n_out: int, scale: float | None, dtype: Any) -> Any:
    """compute_scales_value: 1 / the given scale factor, else in / out."""
    return dtype(1.0 / scale) if scale and scale > 0 else dtype(n_in) / dtype(n_out)


def nearest_taps(n_in: int, n_out: int, scale: float | None, exact: bool = False) -> np.ndarray:
    """upsample_nearest's source index, min(floor(i * scale), in - 1) in float32; nearest-exact's
    min(floor((i + 0.5) * scale), in - 1)."""
    i = np.arange(n_out)
    ratio = _scale(n_in, n_out, scale, np.float32)
    if exact:
        src = np.floor(((i + 0.5) * np.float64(ratio)).astype(np.float32))
    elif n_out == n_in:
        return i
    else:
        src = np.floor(i.astype(np.float32) * ratio)
    return np.minimum(src.astype(np.int64), n_in - 1)


def linear_taps(n_in: int, n_out: int, align_corners: bool, scale: float | None,
                dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(index0, index1, weight0, weight1) per output position: compute_source_index_and_lambda."""
    i = np.arange(n_out)
    if n_out == n_in:  # torch copies: both taps are the position itself
        return i, i, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    if align_corners:
        ratio = dtype(n_in - 1) / dtype(n_out - 1) if n_out > 1 else dtype(0)
        src = ratio * i.astype(dtype)
    else:
        ratio = _scale(n_in, n_out, scale, dtype)
        src = np.maximum(ratio * (i.astype(dtype) + dtype(0.5)) - dtype(0.5), dtype(0))
    index0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    weight1 = np.clip(src - index0.astype(dtype), dtype(0), dtype(1)).astype(dtype)
    index1 = index0 + (index0 < n_in - 1)
    return index0, index1, (dtype(1) - weight1).astype(dtype), weight1


def _sizes(xv: Value, nd: int, output_size: Any, scale_factors: Any) -> tuple[list[int], list[float | None]]:
    spatial = [int(d) for d in xv.type.shape[-nd:]]
    if output_size:
        return [int(n) for n in output_size], [None] * nd
    if not scale_factors:
        raise ConversionError("interpolation needs output_size or scale_factors")
    scales = [float(s) for s in scale_factors]
    return [int(np.floor(n * s)) for n, s in zip(spatial, scales)], scales


def _resize(ctx: Ctx, x: Any, nd: int, sizes: list[int], scales: list[float | None], mode: str,
            align_corners: bool = False) -> Value:
    out = ctx.value(x)
    if any(not isinstance(d, int) for d in out.type.shape[-nd:]):
        raise ConversionError(f"upsample_{mode} over symbolic spatial dims")
    if mode == "linear" and not out.type.dtype.startswith("float"):
        raise ConversionError(f"linear interpolation of {out.type.dtype}")
    rank = out.type.rank
    for i in reversed(range(nd)):  # innermost first: torch's weights multiply the outer axes last
        axis = rank - nd + i
        n_in = out.type.shape[axis]
        if mode != "linear":
            index = nearest_taps(n_in, sizes[i], scales[i], exact=mode == "nearest_exact")
            out = ctx.emit("take", [out, ctx.const(index, "int64")], axis=axis, wrap=False)
            continue
        dtype = out.type.dtype
        taps = linear_taps(n_in, sizes[i], align_corners, scales[i], np.dtype(dtype).type)
        trailing = (1,) * (rank - axis - 1)
        parts = [ctx.emit("mul", [ctx.emit("take", [out, ctx.const(index, "int64")], axis=axis, wrap=False),
                                  ctx.const(weight.reshape((-1,) + trailing), dtype)])
                 for index, weight in ((taps[0], taps[2]), (taps[1], taps[3]))]
        out = ctx.emit("add", parts)
    return out


def _mode(node: torch.fx.Node) -> tuple[str, int]:
    """(nearest | nearest_exact | linear, spatial dims) from the op's name."""
    name = node.target._schema.name.split("::")[-1]
    return ("nearest_exact" if "exact" in name else "nearest" if "nearest" in name else "linear"), int(name[-2])


@converts("upsample_nearest1d.vec", "upsample_nearest2d.vec", "upsample_nearest3d.vec", "_upsample_nearest_exact1d.vec",
          "_upsample_nearest_exact2d.vec", "_upsample_nearest_exact3d.vec")
def _upsample_nearest_vec(ctx: Ctx, node: torch.fx.Node, x: Any, output_size: Any, scale_factors: Any) -> Value:
    mode, nd = _mode(node)
    sizes, scales = _sizes(ctx.value(x), nd, output_size, scale_factors)
    return _resize(ctx, x, nd, sizes, scales, mode)


@converts("upsample_nearest1d.default", "upsample_nearest2d.default", "upsample_nearest3d.default",
          "_upsample_nearest_exact1d.default", "_upsample_nearest_exact2d.default", "_upsample_nearest_exact3d.default")
def _upsample_nearest(ctx: Ctx, node: torch.fx.Node, x: Any, output_size: Any, *scales: Any) -> Value:
    mode, nd = _mode(node)
    return _resize(ctx, x, nd, [int(n) for n in output_size], list(scales) + [None] * (nd - len(scales)), mode)


@converts("upsample_linear1d.vec", "upsample_bilinear2d.vec", "upsample_trilinear3d.vec")
def _upsample_linear_vec(ctx: Ctx, node: torch.fx.Node, x: Any, output_size: Any, align_corners: bool,
                         scale_factors: Any) -> Value:
    nd = _mode(node)[1]
    sizes, scales = _sizes(ctx.value(x), nd, output_size, scale_factors)
    return _resize(ctx, x, nd, sizes, scales, "linear", bool(align_corners))


@converts("upsample_linear1d.default", "upsample_bilinear2d.default", "upsample_trilinear3d.default")
def _upsample_linear(ctx: Ctx, node: torch.fx.Node, x: Any, output_size: Any, align_corners: bool,
                     *scales: Any) -> Value:
    nd = _mode(node)[1]
    return _resize(ctx, x, nd, [int(n) for n in output_size], list(scales) + [None] * (nd - len(scales)), "linear",
                   bool(align_corners))
