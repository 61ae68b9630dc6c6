"""Pad (constant mode), CenterCropPad, Tile and the window generators (Hann, Hamming, Blackman).

Pads, shapes, repeats and window sizes must be known at import time (constants, or computed from them).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, ir_dtype, onnx_axis
from recc.frontends.onnx.shapes import reshape


def _static_dims(x: Value, what: str) -> list[int]:
    if not all(isinstance(d, int) for d in x.type.shape):
        raise ConversionError(f"{what} of a tensor with symbolic dims ({x.type})")
    return [int(d) for d in x.type.shape]


def _pad(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    rank = x.type.rank
    mode = node.attr("mode", "constant")
    if mode != "constant":
        raise ConversionError(f"Pad mode {mode!r}: only constant padding is supported")
    if ctx.opset < 11:
        pads, value = list(node.attr("pads")), float(node.attr("value", 0.0))
        axes = list(range(rank))
    else:
        pads = [int(p) for p in ctx.ints(node, 1, "Pad's pads")]
        constant = ctx.static(node, 2, "Pad's constant_value")
        value = 0 if constant is None or constant.size == 0 else np.ravel(constant)[0].item()
        axes_given = ctx.ints(node, 3, "Pad's axes")
        axes = [onnx_axis(int(a), rank) for a in axes_given] if axes_given else list(range(rank))
    if len(pads) != 2 * len(axes):
        raise ConversionError(f"Pad's pads {pads} do not give a begin and an end for each of the axes {axes}")
    per_axis = [(0, 0)] * rank
    for i, a in enumerate(axes):
        per_axis[a] = (int(pads[i]), int(pads[i + len(axes)]))
    if all(p == (0, 0) for p in per_axis):
        return x
    return ctx.emit("pad", [x], pads=tuple(per_axis), value=value)


def _center_crop_pad(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    dims = _static_dims(x, "CenterCropPad")
    target = [int(s) for s in ctx.ints(node, 1, "CenterCropPad's shape")]
    axes = [onnx_axis(int(a), x.type.rank) for a in node.attr("axes", list(range(x.type.rank)))]
    if len(target) != len(axes):
        raise ConversionError(f"CenterCropPad's shape {target} does not match its axes {axes}")
    pads = [(0, 0)] * x.type.rank
    for a, size in zip(axes, target):
        if size < dims[a]:  # crop: the centred window, the extra element (odd difference) at the end
            lo = (dims[a] - size) // 2
            pads[a] = (-lo, -(dims[a] - size - lo))
        elif size > dims[a]:  # pad with zeros: the extra element at the end
            lo = (size - dims[a]) // 2
            pads[a] = (lo, size - dims[a] - lo)
    return x if all(p == (0, 0) for p in pads) else ctx.emit("pad", [x], pads=tuple(pads), value=0)


def _tile(ctx: Ctx, node: OnnxNode) -> Value:
    """x [d0, d1, ...] tiled r times per axis: reshape to [1, d0, 1, d1, ...], expand to [r0, d0, r1, d1, ...],
    merge the pairs."""
    x = ctx.value(node, 0)
    dims = _static_dims(x, "Tile")
    repeats = [int(r) for r in ctx.ints(node, 1, "Tile's repeats")]
    if len(repeats) != len(dims) or any(r < 0 for r in repeats):
        raise ConversionError(f"Tile's repeats {repeats} for a rank-{len(dims)} input")
    if all(r == 1 for r in repeats):
        return x
    spread = reshape(ctx, x, [v for d in dims for v in (1, d)], allow_zero=True)
    grown = ctx.emit("expand", [spread], shape=tuple(v for d, r in zip(dims, repeats) for v in (r, d)))
    return reshape(ctx, grown, [d * r for d, r in zip(dims, repeats)], allow_zero=True)


def _window(coefficients: tuple[float, ...]) -> Callable[[Ctx, OnnxNode], np.ndarray]:
    """sum_k (-1)^k a_k cos(2 pi k n / N), N the size (periodic) or the size - 1 (symmetric)."""
    def convert(ctx: Ctx, node: OnnxNode) -> np.ndarray:
        size = int(np.ravel(ctx.static(node, 0, f"{node.op_type}'s size"))[0])
        periodic = int(node.attr("periodic", 1))
        n = np.arange(size, dtype=np.float64)
        denominator = size if periodic else size - 1
        angle = 2 * np.pi * n / denominator if denominator else np.zeros_like(n)
        window = sum(((-1) ** k) * a * np.cos(k * angle) for k, a in enumerate(coefficients))
        return np.asarray(window).astype(ir_dtype(int(node.attr("output_datatype", 1))))
    return convert


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Pad": _pad, "CenterCropPad": _center_crop_pad, "Tile": _tile,
    "HannWindow": _window((0.5, 0.5)), "HammingWindow": _window((25 / 46, 21 / 46)),
    "BlackmanWindow": _window((0.42, 0.5, 0.08)),
}

__all__ = ["CONVERTERS"]
