"""Conv, ConvInteger and QLinearConv as the IR's `conv`, ConvTranspose as its `conv_transpose` (N-d, groups, dilations); auto_pad SAME_UPPER /
SAME_LOWER / VALID and asymmetric pads become an explicit `pad` before it. The integer forms convolve the
zero-point-shifted int32 operands (QLinearConv adds its int32 bias and requantizes as QLinearMatMul)."""

from __future__ import annotations

from typing import Any, Callable

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode
from recc.frontends.onnx.quantize import per_axis, requantize, shifted


def conv_padding(node: OnnxNode, spatial: tuple, kernel: tuple, strides: list[int], dilations: list[int]
                 ) -> list[tuple[int, int]]:
    """(before, after) per spatial axis from `auto_pad` or `pads`, as ONNX defines them."""
    nd = len(spatial)
    auto = node.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            if not isinstance(size, int):
                raise ConversionError(f"auto_pad {auto} over a symbolic spatial dim")
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * nd
    pads = list(node.attr("pads", [0] * (2 * nd)))
    if len(pads) != 2 * nd:
        raise ConversionError(f"pads {pads} do not hold a begin and an end per spatial axis ({nd})")
    return list(zip(pads[:nd], pads[nd:]))


def _conv_core(ctx: Ctx, node: OnnxNode, x: Value, w: Value, bias: Value | None) -> Value:
    nd = x.type.rank - 2
    if nd < 1 or w.type.rank != x.type.rank:
        raise ConversionError(f"Conv expects x [N, C, *spatial] and w [M, C/group, *kernel], got {x.type} and "
                              f"{w.type}")
    kernel = tuple(w.type.shape[2:])
    if node.attr("kernel_shape") is not None and tuple(node.attr("kernel_shape")) != kernel:
        raise ConversionError(f"kernel_shape {node.attr('kernel_shape')} differs from the weight's {kernel}")
    strides = list(node.attr("strides", [1] * nd))
    dilations = list(node.attr("dilations", [1] * nd))
    pads = conv_padding(node, tuple(x.type.shape[2:]), kernel, strides, dilations)
    symmetric = [lo for lo, hi in pads] if all(lo == hi for lo, hi in pads) else None
    if symmetric is None:
        x = ctx.emit("pad", [x], pads=((0, 0), (0, 0), *pads), value=0)
        symmetric = [0] * nd
    inputs = [x, w] + ([bias] if bias is not None else [])
    return ctx.emit("conv", inputs, stride=tuple(strides), padding=tuple(symmetric), dilation=tuple(dilations),
                    groups=int(node.attr("group", 1)))


def _conv(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    w = ctx.value(node, 1, x.type.dtype)
    bias = ctx.value(node, 2, x.type.dtype) if ctx.input(node, 2) is not None else None
    return _conv_core(ctx, node, x, w, bias)


def _conv_integer(ctx: Ctx, node: OnnxNode) -> Value:
    return _conv_core(ctx, node, shifted(ctx, node, 0, 2, None), shifted(ctx, node, 1, 3, 0), None)


def _qlinear_conv(ctx: Ctx, node: OnnxNode) -> Value:
    x, w = shifted(ctx, node, 0, 2, None), shifted(ctx, node, 3, 5, 0)
    bias = ctx.value(node, 8, "int32") if ctx.input(node, 8) is not None else None
    acc = _conv_core(ctx, node, x, w, bias)
    w_scale = ctx.value(node, 4)
    if w_scale.type.rank == 1:  # per output channel: axis 1 of the result
        w_scale = per_axis(ctx, w_scale, acc.type.rank, 1)
    y_zp = ctx.value(node, 7) if ctx.input(node, 7) is not None else None
    dtype = y_zp.type.dtype if y_zp is not None else ctx.value(node, 0).type.dtype
    return requantize(ctx, acc, [ctx.value(node, 1), w_scale], ctx.value(node, 6), y_zp, dtype)


def _transpose_pads(node: OnnxNode, sizes: tuple, kernel: tuple, strides: list[int], dilations: list[int],
                    extra: list[int]) -> list[tuple[int, int]]:
    """(begin, end) cropped off the full transposed output per axis, as ONNX defines them (output_shape or
    auto_pad SAME_* give a total split between the ends; else `pads`); negative: padded instead."""
    nd = len(sizes)
    auto = str(node.attr("auto_pad", "NOTSET"))
    shape = node.attr("output_shape")
    if shape is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        if auto == "VALID":
            return [(0, 0)] * nd
        pads = list(node.attr("pads", [0] * (2 * nd)))
        return list(zip(pads[:nd], pads[nd:]))
    want = list(shape)[-nd:] if shape is not None else [n * s for n, s in zip(sizes, strides)]
    out = []
    for n, k, s, d, o, w in zip(sizes, kernel, strides, dilations, extra, want):
        total = s * (n - 1) + o + (k - 1) * d + 1 - int(w)
        half = total // 2
        out.append((half, total - half) if auto == "SAME_UPPER" else (total - half, half))
    return out


def _conv_transpose(ctx: Ctx, node: OnnxNode) -> Value:
    """The full transposed convolution (no padding), output_padding's zeros appended, ONNX's pads cropped
    (or, negative, padded), then the bias."""
    x = ctx.value(node, 0)
    w = ctx.value(node, 1, x.type.dtype)
    nd = x.type.rank - 2
    sizes, kernel = tuple(x.type.shape[2:]), tuple(w.type.shape[2:])
    if nd < 1 or not all(isinstance(n, int) for n in sizes):
        raise ConversionError(f"ConvTranspose needs static spatial dims, got {x.type}")
    strides = [int(s) for s in node.attr("strides", [1] * nd)]
    dilations = [int(d) for d in node.attr("dilations", [1] * nd)]
    extra = [int(o) for o in node.attr("output_padding", [0] * nd)]
    crops = _transpose_pads(node, sizes, kernel, strides, dilations, extra)
    y = ctx.emit("conv_transpose", [x, w], stride=tuple(strides), padding=(0,) * nd, output_padding=(0,) * nd,
                 dilation=tuple(dilations), groups=int(node.attr("group", 1)))
    grow = [(max(0, -lo), o + max(0, -hi)) for (lo, hi), o in zip(crops, extra)]
    if any(g != (0, 0) for g in grow):
        y = ctx.emit("pad", [y], pads=((0, 0), (0, 0), *grow), value=0)
    for axis, (lo, hi) in enumerate(crops):
        length = y.type.shape[2 + axis]
        start, end = max(0, lo), length - max(0, hi)
        if start or end != length:
            y = ctx.emit("slice", [y], axis=2 + axis, start=start, end=end, step=1)
    if ctx.input(node, 2) is not None:
        bias = ctx.value(node, 2, x.type.dtype)
        y = ctx.emit("add", [y, ctx.emit("reshape", [bias], shape=(bias.type.shape[0],) + (1,) * nd)])
    return y


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "ConvInteger": _conv_integer, "QLinearConv": _qlinear_conv,
}

__all__ = ["CONVERTERS", "conv_padding"]
