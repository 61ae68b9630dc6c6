"""The IR's window ops beyond conv and pool (math.py) as Relax, with eager PyTorch's semantics:

- conv_transpose: zeros inserted between the input's positions (stride - 1 per gap), padded by
  dilation * (kernel - 1) - padding (a negative amount crops) plus output_padding on the right, then a
  stride-1 convolution with the kernel flipped and its in/out channels swapped per group. TVM's own
  conv*_transpose spreads a NaN of the input to outputs torch keeps finite, so it is not used. The inserted
  zeros meet every kernel tap: a NaN or inf *weight* would make NaN at outputs torch leaves finite, so this
  form serves finite parameter weights only. A weight known only at run time (or holding NaN / inf) takes the
  exact form instead: for every output position and kernel tap, the input position it reads (a static
  table; taps that meet no input position masked out after the product, never multiplied into the sum),
  products summed over input channels and taps, as torch's scatter form sums only real pairs.
- pool_indices, adaptive_pool, adaptive_pool_indices: every window's taps gathered by a static table of
  plane positions (interpreter_window.window_taps: a tap in the padding re-reads an earlier one), then
  torch's choice of tap (the first maximum, or the last NaN) or the masked mean.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.lowering.math import pad_or_crop
from recc.compiler.interpreter_window import pool_taps
from recc.compiler.ir import Node
from recc.compiler.ir.types import is_float

op = relax.op
CONV = {1: op.nn.conv1d, 2: op.nn.conv2d, 3: op.nn.conv3d}


def _insert_zeros(lw: LoweringContext, x: relax.Expr, shape: tuple[int, ...], stride: tuple[int, ...]) -> relax.Expr:
    """x [N, C, *S] with stride - 1 zeros after every position of each spatial axis: [N, C, *(S * stride)]."""
    if all(s == 1 for s in stride):
        return x
    nd, n, c = len(stride), lw.dim(shape[0]), lw.dim(shape[1])
    x = lw.emit(op.reshape(x, [n, c] + [v for size in shape[2:] for v in (size, 1)]))
    x = lw.emit(op.nn.pad(x, [0, 0, 0, 0] + [v for s in stride for v in (0, 0, 0, s - 1)], "constant", 0.0))
    return lw.emit(op.reshape(x, [n, c] + [shape[2 + i] * stride[i] for i in range(nd)]))


def _flipped_kernel(lw: LoweringContext, w: relax.Expr, shape: tuple[int, ...], groups: int) -> relax.Expr:
    """w [C, O/groups, *K] as a convolution's [O, C/groups, *K], each spatial axis reversed."""
    c, per_out, kernel = shape[0], shape[1], list(shape[2:])
    nd = len(kernel)
    w = lw.emit(op.reshape(w, [groups, c // groups, per_out] + kernel))
    w = lw.emit(op.permute_dims(w, [0, 2, 1] + [3 + i for i in range(nd)]))
    w = lw.emit(op.reshape(w, [groups * per_out, c // groups] + kernel))
    for axis in range(2, 2 + nd):
        w = lw.emit(op.flip(w, axis))
    return w


def _conv_transpose(lw: LoweringContext, node: Node) -> relax.Expr:
    args, a = lw.args(node), node.attrs
    xt, wt = node.inputs[0].type, node.inputs[1].type
    weight = lw.graph.param_array(node.inputs[1]) if node.inputs[1].kind == "param" else None
    if weight is None or (weight.dtype.kind == "f" and not np.isfinite(weight).all()):
        return _conv_transpose_exact(lw, node)
    nd = xt.rank - 2
    s, p, o, d = a["stride"], a["padding"], a["output_padding"], a["dilation"]
    x = _insert_zeros(lw, args[0], xt.shape, s)
    reach = [d[i] * (wt.shape[2 + i] - 1) - p[i] for i in range(nd)]
    padded_shape = [xt.shape[0], xt.shape[1]] + [xt.shape[2 + i] * s[i] for i in range(nd)]
    x = pad_or_crop(lw, x, padded_shape, [(0, 0), (0, 0)] + [(reach[i], reach[i] + o[i] - (s[i] - 1))
                                                             for i in range(nd)], 0.0)
    layout = "DHW"[3 - nd:]
    out = lw.emit(CONV[nd](lw.emit(x), _flipped_kernel(lw, args[1], wt.shape, a["groups"]), strides=(1,) * nd,
                           padding=(0,) * (2 * nd), dilation=tuple(d), groups=a["groups"], data_layout="NC" + layout,
                           kernel_layout="OI" + layout))
    if len(args) == 3:
        out = lw.emit(op.add(out, op.reshape(args[2], (-1,) + (1,) * nd)))
    return out


def _transpose_taps(sizes: tuple[int, ...], kernel: tuple[int, ...], out: tuple[int, ...], a: dict[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(flat input position, whether the tap meets one) [outputs, taps] of a transposed convolution:
    output y reads input (y + padding - tap * dilation) / stride where that divides and lies inside."""
    position = np.zeros((1, 1), np.int64)
    valid = np.ones((1, 1), bool)
    for n, k, y, s, p, d in zip(sizes, kernel, out, a["stride"], a["padding"], a["dilation"]):
        num = np.arange(y)[:, None] + p - np.arange(k)[None, :] * d
        ok = (num % s == 0) & (num >= 0) & (num // s < n)
        axis_position = np.where(ok, num // s, 0)
        position = (position[:, None, :, None] * n + axis_position[None, :, None, :]).reshape(
            position.shape[0] * y, position.shape[1] * k)
        valid = (valid[:, None, :, None] & ok[None, :, None, :]).reshape(valid.shape[0] * y, valid.shape[1] * k)
    return position, valid


def _conv_transpose_exact(lw: LoweringContext, node: Node) -> relax.Expr:
    """The product of every (output, tap) pair with its input position, masked where the tap meets none."""
    args, a = lw.args(node), node.attrs
    xt, wt, yt = node.inputs[0].type, node.inputs[1].type, node.output.type
    groups, nd = a["groups"], xt.rank - 2
    per_in, per_out = wt.shape[0] // groups, wt.shape[1]
    position, valid = _transpose_taps(tuple(xt.shape[2:]), tuple(wt.shape[2:]), tuple(yt.shape[2:]), a)
    outputs, taps = position.shape
    n = lw.dim(xt.shape[0])
    plane = lw.emit(op.reshape(args[0], [n, xt.shape[1], int(np.prod(xt.shape[2:], dtype=np.int64))]))
    read = lw.emit(op.take(plane, relax.const(position.reshape(-1), "int64"), axis=2, mode="clip"))
    read = lw.emit(op.reshape(read, [n, groups, per_in, 1, outputs, taps]))
    w = lw.emit(op.reshape(args[1], [1, groups, per_in, per_out, 1, taps]))
    product = lw.emit(op.multiply(read, w))
    zero = relax.const(0, yt.dtype)
    masked = lw.emit(op.where(relax.const(valid), product, zero))
    out = lw.emit(op.sum(masked, axis=[2, 5]))
    out = lw.emit(op.reshape(out, [n, groups * per_out] + list(yt.shape[2:])))
    if len(args) == 3:
        out = lw.emit(op.add(out, op.reshape(args[2], (-1,) + (1,) * nd)))
    return out


LOWERINGS: dict[str, Callable[[LoweringContext, Node], Any]] = {
    "conv_transpose": _conv_transpose,
}


def _taps(lw: LoweringContext, node: Node, x: relax.Expr) -> tuple[relax.Expr, np.ndarray, np.ndarray]:
    """(every window's taps [N, C, outputs, taps], position and inside [outputs, taps]: interpreter_window's
    window_taps) for a max pool's indices or an adaptive pool."""
    shape = node.inputs[0].type.shape
    position, inside = pool_taps(tuple(shape[2:]), node.op, node.attrs)
    n, c = lw.dim(shape[0]), lw.dim(shape[1])
    plane = lw.emit(op.reshape(x, [n, c, int(np.prod(shape[2:], dtype=np.int64))]))
    taps = lw.emit(op.take(plane, relax.const(position.reshape(-1), "int64"), axis=2, mode="clip"))
    return lw.emit(op.reshape(taps, [n, c, *position.shape])), position, inside


def _best_tap(lw: LoweringContext, taps: relax.Expr, count: int, floating: bool) -> relax.Expr:
    """[N, C, outputs]: which tap torch's loop ends on, the first largest or else the last NaN (TVM's argmax
    skips NaN, and gives -1 for a window of the dtype's lowest values, where torch keeps tap 0)."""
    plain = lw.emit(op.maximum(op.argmax(taps, axis=3), relax.const(0, "int64")))
    if not floating:
        return plain
    nans = lw.emit(op.astype(op.isnan(taps), "int8"))
    last_nan = op.subtract(relax.const(count - 1, "int64"), op.argmax(op.flip(nans, 3), axis=3))
    has_nan = op.greater(op.max(nans, axis=3), relax.const(0, "int8"))
    return lw.emit(op.where(has_nan, last_nan, plain))


def _windowed_pool(lw: LoweringContext, node: Node) -> relax.Expr:
    """pool_indices, adaptive_pool and adaptive_pool_indices from a gather of every window's taps: the max and
    its index at torch's chosen tap, the average of the taps inside the window."""
    (x,), xt, out = lw.args(node), node.inputs[0].type, node.output.type
    taps, position, inside = _taps(lw, node, x)
    out_shape = [lw.dim(d) for d in out.shape]
    if node.op == "adaptive_pool" and node.attrs["kind"] == "avg":
        zero = relax.const(0, xt.dtype)
        total = lw.emit(op.sum(op.where(relax.const(inside, "bool"), taps, zero), axis=3))
        count = inside.sum(axis=1).astype("float64")
        if is_float(xt.dtype):
            return lw.emit(op.reshape(op.divide(total, relax.const(count, xt.dtype)), out_shape))
        mean = op.trunc(op.divide(op.astype(total, "float64"), relax.const(count, "float64")))
        return lw.emit(op.reshape(op.astype(mean, xt.dtype), out_shape))
    best = _best_tap(lw, taps, position.shape[1], is_float(xt.dtype))
    if node.op == "adaptive_pool":
        value = op.gather_elements(taps, op.expand_dims(best, 3), axis=3)
        return lw.emit(op.reshape(value, out_shape))
    offsets = relax.const(np.arange(position.shape[0]) * position.shape[1], "int64")
    flat = lw.emit(op.add(best, offsets))
    return lw.emit(op.reshape(op.take(relax.const(position.reshape(-1), "int64"), flat, axis=0, mode="clip"), out_shape))


LOWERINGS.update({name: _windowed_pool for name in ("pool_indices", "adaptive_pool", "adaptive_pool_indices")})
