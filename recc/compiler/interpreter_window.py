"""Reference semantics of the IR's window ops beyond plain conv and pool (interpreter_math.py): transposed
convolution, max pooling's indices, adaptive pooling and interpolation, as eager PyTorch computes them
(each output reads only the inputs torch reads, so NaN and inf land where they land in torch)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir.ops_nn import conv_transpose_length

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


WINDOW_KERNELS: dict[str, Kernel] = {
    "conv_transpose": _conv_transpose,
}

__all__ = ["WINDOW_KERNELS"]
