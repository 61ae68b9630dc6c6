"""ONNX pooling and local response normalization over the IR's `pool` / `pool_indices`:
MaxPool (with its Indices output: flat over the whole tensor, row-major or, storage_order=1, column-major
within each plane), AveragePool (count_include_pad), LpPool, GlobalAveragePool / GlobalMaxPool /
GlobalLpPool, LRN. Symmetric pads map onto the IR's (torch's) geometry, which ONNX shares (ceil_mode's
last window must start inside the input or its left padding); asymmetric pads are applied explicitly
first (the neutral value of the pooling: -inf for max, 0 for sums) and, for an average that does not
count the padding, the sums are divided by a per-position count computed at import time."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.interpreter_math import MATH_KERNELS
from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode
from recc.frontends.onnx.conv import conv_padding


def _geometry(node: OnnxNode, x: Value) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The IR pool attrs (padding 0 for now) and ONNX's (begin, end) pads per spatial axis."""
    nd = x.type.rank - 2
    spatial = tuple(x.type.shape[2:])
    if nd < 1 or not all(isinstance(d, int) for d in spatial):
        raise ConversionError(f"{node.op_type} needs static spatial dims, got {x.type}")
    kernel = tuple(int(k) for k in node.attr("kernel_shape", []))
    if len(kernel) != nd:
        raise ConversionError(f"kernel_shape {list(kernel)} does not give one size per spatial axis ({nd})")
    strides = [int(s) for s in node.attr("strides", [1] * nd)]
    dilations = [int(d) for d in node.attr("dilations", [1] * nd)]
    pads = conv_padding(node, spatial, kernel, strides, dilations)
    attrs = dict(kernel=kernel, stride=tuple(strides), padding=(0,) * nd, dilation=tuple(dilations),
                 ceil_mode=bool(node.attr("ceil_mode", 0)), count_include_pad=True, divisor=None)
    return attrs, pads


def _windows(ctx: Ctx, x: Value, kind: str, fill: float, attrs: dict[str, Any], pads: list[tuple[int, int]],
             counts: np.ndarray | None = None) -> Value:
    """pool over x with pads: symmetric ones as the IR's padding, asymmetric ones explicit (filled with
    `fill`), the sums then divided by `counts` when given. With ceil_mode the IR (torch) lets the last
    window start anywhere in the explicitly padded input, ONNX only inside the input or its left padding:
    the windows ONNX does not have are sliced off."""
    if all(lo == hi for lo, hi in pads):
        return ctx.emit("pool", [x], kind=kind, **dict(attrs, padding=tuple(lo for lo, _ in pads)))
    out = ctx.emit("pool", [ctx.emit("pad", [x], pads=((0, 0), (0, 0), *pads), value=fill)], kind=kind, **attrs)
    if counts is not None:
        out = ctx.emit("div", [out, ctx.const(counts, x.type.dtype)])
    for axis, (size, (lo, hi), k, s, d) in enumerate(zip(x.type.shape[2:], pads, attrs["kernel"],
                                                         attrs["stride"], attrs["dilation"])):
        n = out.type.shape[2 + axis]
        if not attrs["ceil_mode"]:
            continue
        want = -(-(size + lo + hi - d * (k - 1) - 1) // s) + 1  # ONNX's count
        want -= (want - 1) * s >= size + lo
        if want < n:
            out = ctx.emit("slice", [out], axis=2 + axis, start=0, end=want, step=1)
    return out


def _max_pool(ctx: Ctx, node: OnnxNode) -> Any:
    x = ctx.value(node, 0)
    attrs, pads = _geometry(node, x)
    floating = x.type.dtype.startswith(("float", "bfloat"))
    low = -np.inf if floating else float(np.iinfo(x.type.dtype).min)
    values = _windows(ctx, x, "max", low, attrs, pads)
    if len(node.outputs) < 2 or not node.outputs[1]:
        return values
    if not all(lo == hi for lo, hi in pads):
        raise ConversionError("MaxPool's Indices with asymmetric pads")
    plane = ctx.emit("pool_indices", [x], **dict(attrs, padding=tuple(lo for lo, _ in pads)))
    shape = x.type.shape
    if int(node.attr("storage_order", 0)):
        if len(shape) != 4:
            raise ConversionError("MaxPool's column-major Indices (storage_order=1) beyond 2-d")
        h, w = shape[2], shape[3]
        row = ctx.emit("floor_divide", [plane, ctx.const(w, "int64")])
        col = ctx.emit("sub", [plane, ctx.emit("mul", [row, ctx.const(w, "int64")])])
        plane = ctx.emit("add", [ctx.emit("mul", [col, ctx.const(h, "int64")]), row])
    n, c = shape[0], shape[1]
    if not isinstance(n, int) or not isinstance(c, int):
        raise ConversionError("MaxPool's Indices over a symbolic batch or channel dim")
    start = np.arange(n * c, dtype=np.int64).reshape((n, c) + (1,) * (len(shape) - 2)) * int(np.prod(shape[2:]))
    return values, ctx.emit("add", [plane, ctx.const(start, "int64")])


def _average_pool(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    attrs, pads = _geometry(node, x)
    include = bool(node.attr("count_include_pad", 0))
    if all(lo == hi for lo, hi in pads):
        return ctx.emit("pool", [x], kind="avg", **dict(attrs, padding=tuple(lo for lo, _ in pads),
                                                            count_include_pad=include))
    if include:  # every window position inside the explicitly padded input counts
        return _windows(ctx, x, "avg", 0.0, attrs, pads)
    real = np.pad(np.ones(x.type.shape[2:]), pads)  # 1 where a window position is real input, 0 in the pads
    inside = MATH_KERNELS["pool"]([real[None, None]], dict(attrs, kind="avg", divisor=1))[0, 0]
    return _windows(ctx, x, "avg", 0.0, dict(attrs, divisor=1), pads, counts=inside)


def _lp_pool(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    attrs, pads = _geometry(node, x)
    p = float(node.attr("p", 2))
    powered = ctx.emit("pow", [ctx.emit("abs", [x]), ctx.const(p, x.type.dtype)])
    sums = _windows(ctx, powered, "avg", 0.0, dict(attrs, divisor=1), pads)
    return ctx.emit("pow", [sums, ctx.const(1.0 / p, x.type.dtype)])


def _global(kind: str) -> Callable[[Ctx, OnnxNode], Value]:
    def convert(ctx: Ctx, node: OnnxNode) -> Value:
        x = ctx.value(node, 0)
        axes = tuple(range(2, x.type.rank))
        if kind == "lp":
            p = float(node.attr("p", 2))
            powered = ctx.emit("pow", [ctx.emit("abs", [x]), ctx.const(p, x.type.dtype)])
            total = ctx.emit("sum", [powered], axes=axes, keepdims=True)
            return ctx.emit("pow", [total, ctx.const(1.0 / p, x.type.dtype)])
        return ctx.emit("mean" if kind == "avg" else "max", [x], axes=axes, keepdims=True)
    return convert


def _lrn(ctx: Ctx, node: OnnxNode) -> Value:
    """y = x / (bias + alpha / size * sum of x^2 over channels c - floor((size-1)/2) .. c + ceil((size-1)/2))^beta."""
    x = ctx.value(node, 0)
    size = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0))
    channels = x.type.shape[1]
    if x.type.rank < 3 or not isinstance(channels, int):
        raise ConversionError(f"LRN expects [N, C, ...] with a static C, got {x.type}")
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    square = ctx.emit("mul", [x, x])
    padded = ctx.emit("pad", [square], pads=((0, 0), (before, after)) + ((0, 0),) * (x.type.rank - 2), value=0)
    total = None
    for i in range(size):
        part = ctx.emit("slice", [padded], axis=1, start=i, end=i + channels, step=1)
        total = part if total is None else ctx.emit("add", [total, part])
    scale = ctx.emit("add", [ctx.const(bias, x.type.dtype),
                             ctx.emit("mul", [total, ctx.const(alpha / size, x.type.dtype)])])
    return ctx.emit("div", [x, ctx.emit("pow", [scale, ctx.const(beta, x.type.dtype)])])


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "MaxPool": _max_pool, "AveragePool": _average_pool, "LpPool": _lp_pool,
    "GlobalAveragePool": _global("avg"), "GlobalMaxPool": _global("max"), "GlobalLpPool": _global("lp"),
    "LRN": _lrn,
}

__all__ = ["CONVERTERS"]
