"""Reference semantics of the IR's window ops beyond plain conv and pool (interpreter_math.py): transposed
convolution, max pooling's indices, adaptive pooling and interpolation, as eager PyTorch computes them
(each output reads only the inputs torch reads, so NaN and inf land where they land in torch)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir.ops_nn import conv_transpose_length, pool_geometry

Kernel = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]


def _conv_transpose(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """The scatter form: every input position adds input x weight tap at position*stride + tap*dilation of a
    buffer that the padding then crops."""
    data, w = x[0], x[1]
    nd, groups = data.ndim - 2, a["groups"]
    s, p, op, d = a["stride"], a["padding"], a["output_padding"], a["dilation"]
    sizes, kernel = data.shape[2:], w.shape[2:]
    full = [(sizes[i] - 1) * s[i] + d[i] * (kernel[i] - 1) + 1 + op[i] for i in range(nd)]
    per_in, per_out = data.shape[1] // groups, w.shape[1]
    buffer = np.zeros((data.shape[0], per_out * groups, *full), dtype=data.dtype)
    for k in np.ndindex(*kernel):
        at = tuple(slice(k[i] * d[i], k[i] * d[i] + (sizes[i] - 1) * s[i] + 1, s[i]) for i in range(nd))
        for g in range(groups):
            taps = w[(slice(g * per_in, (g + 1) * per_in), slice(None)) + k]  # [C/groups, O/groups]
            part = np.einsum("nc...,co->no...", data[:, g * per_in:(g + 1) * per_in], taps).astype(data.dtype)
            buffer[(slice(None), slice(g * per_out, (g + 1) * per_out)) + at] += part
    lengths = [conv_transpose_length(sizes[i], kernel[i], s[i], p[i], op[i], d[i]) for i in range(nd)]
    out = np.ascontiguousarray(buffer[(slice(None), slice(None)) + tuple(slice(p[i], p[i] + lengths[i])
                                                                        for i in range(nd))])
    if len(x) == 3:
        out += x[2].reshape((1, -1) + (1,) * nd).astype(data.dtype)
    return out


def _pool_axes(sizes: tuple[int, ...], a: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial axis of a max pool: (input coordinate, inside the input) [output, tap]."""
    axes = []
    for n, k, s, p, d in zip(sizes, a["kernel"], a["stride"], a["padding"], a["dilation"]):
        out, _ = pool_geometry(n, k, s, p, d, a["ceil_mode"])
        coord = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
        axes.append((coord, (coord >= 0) & (coord < n)))
    return axes


def _adaptive_axes(sizes: tuple[int, ...], output_size: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial axis of an adaptive pool: (input coordinate, inside the window) [output, tap]; window i spans
    floor(i * n / out) .. ceil((i + 1) * n / out) as torch's start_index / end_index."""
    axes = []
    for n, out in zip(sizes, output_size):
        i = np.arange(out)
        start, end = (i * n) // out, -(-((i + 1) * n) // out)
        coord = start[:, None] + np.arange(int((end - start).max()))[None, :]
        axes.append((coord, coord < end[:, None]))
    return axes


def window_taps(sizes: tuple[int, ...], axes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(position, inside) [outputs, taps], both in row-major order: `position` is the flat index in the input's
    (N, C) plane of each window tap; a tap outside the input or window reads the last tap before it that is
    inside (the window's first such tap if none): a copy of a tap already read, which changes no maximum, no
    index torch would report, and no sum once masked by `inside`."""
    nd = len(sizes)
    strides = [int(np.prod(sizes[i + 1:], dtype=np.int64)) for i in range(nd)]
    position, inside = np.zeros((1,) * 2 * nd, np.int64), np.ones((1,) * 2 * nd, bool)
    for i, (coord, valid) in enumerate(axes):
        shape = [1] * 2 * nd
        shape[i], shape[nd + i] = coord.shape
        position = position + (coord * strides[i]).reshape(shape)
        inside = inside & valid.reshape(shape)
    outputs, taps = int(np.prod(position.shape[:nd])), int(np.prod(position.shape[nd:]))
    position, inside = position.reshape(outputs, taps), inside.reshape(outputs, taps)
    if not inside.any(axis=1).all():
        raise ValueError("a pooling window lies entirely in the padding")
    last = np.maximum.accumulate(np.where(inside, np.arange(taps)[None, :], -1), axis=1)
    last = np.where(last < 0, inside.argmax(axis=1)[:, None], last)
    return np.take_along_axis(position, last, axis=1), inside


def pool_taps(sizes: tuple[int, ...], op: str, a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """window_taps of a pool_indices, adaptive_pool or adaptive_pool_indices node with these attrs."""
    if op == "pool_indices":
        return window_taps(sizes, _pool_axes(sizes, a))
    return window_taps(sizes, _adaptive_axes(sizes, tuple(a["output_size"])))


def _windowed(x: np.ndarray, position: np.ndarray) -> np.ndarray:
    """[N, C, outputs, taps]: every window's taps."""
    return x.reshape(x.shape[:2] + (-1,))[:, :, position]


def _max_with_index(x: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's loop: a tap replaces the maximum when it is larger or NaN (so the last NaN wins), starting from
    the dtype's lowest value at the window's first tap."""
    taps = _windowed(x, position)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    best = np.full(taps.shape[:3], low, x.dtype)
    index = np.broadcast_to(position[:, 0], best.shape).copy()
    for k in range(position.shape[1]):
        v = taps[..., k]
        better = (v > best) | (np.isnan(v) if x.dtype.kind == "f" else False)
        best, index = np.where(better, v, best), np.where(better, position[:, k], index)
    return best, index


def _adaptive_pool(x: list[np.ndarray], a: dict[str, Any], op: str = "adaptive_pool") -> np.ndarray:
    """adaptive_pool, or the indices of a max pool (pool_indices, adaptive_pool_indices)."""
    data = x[0]
    position, inside = pool_taps(data.shape[2:], op, a)
    spatial = tuple(a["output_size"]) if op != "pool_indices" else tuple(
        pool_geometry(n, k, s, p, d, a["ceil_mode"])[0]
        for n, k, s, p, d in zip(data.shape[2:], a["kernel"], a["stride"], a["padding"], a["dilation"]))
    if op != "adaptive_pool" or a["kind"] == "max":
        best, index = _max_with_index(data, position)
        return (best if op == "adaptive_pool" else index).reshape(data.shape[:2] + spatial)
    total = np.where(inside, _windowed(data, position), 0).sum(axis=-1, dtype=data.dtype)
    count = inside.sum(axis=1)
    mean = (total / count).astype(data.dtype) if data.dtype.kind == "f" else np.trunc(total / count).astype(data.dtype)
    return mean.reshape(data.shape[:2] + spatial)


WINDOW_KERNELS: dict[str, Kernel] = {
    "conv_transpose": _conv_transpose,
    "pool_indices": lambda x, a: _adaptive_pool(x, a, "pool_indices"),
    "adaptive_pool": _adaptive_pool,
    "adaptive_pool_indices": lambda x, a: _adaptive_pool(x, a, "adaptive_pool_indices"),
}

__all__ = ["WINDOW_KERNELS"]
