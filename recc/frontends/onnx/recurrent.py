"""ONNX GRU -> dense (the input projections of every step as one GEMM) + recc's `gru` op.

Accepted: one forward direction, `linear_before_reset=1` (what torch.onnx exports for nn.GRU: the reset
gate multiplies the hidden product including its bias, as in PyTorch), the default activations, no
sequence_lens, and a zero or absent initial_h. ONNX orders the gates z, r, h; recc (like PyTorch) r, z, n,
so W, R and both biases are reordered at import.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.compiler.ir import is_zero
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode


def _reorder(gates: np.ndarray, hidden: int) -> np.ndarray:
    """Rows [z, r, h] -> [r, z, n] along axis 0."""
    z, r, h = gates[:hidden], gates[hidden:2 * hidden], gates[2 * hidden:]
    return np.ascontiguousarray(np.concatenate([r, z, h], axis=0), dtype=np.float32)


def _gru(ctx: Ctx, node: OnnxNode) -> list[Value]:
    hidden = int(node.attr("hidden_size", 0))
    direction = node.attr("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    activations = [a.decode() if isinstance(a, bytes) else a for a in node.attr("activations", [])]
    if direction != "forward":
        raise ConversionError(f"GRU direction {direction!r}: only forward GRUs are supported")
    if int(node.attr("linear_before_reset", 0)) != 1:
        raise ConversionError("GRU with linear_before_reset=0 is not supported (PyTorch exports 1)")
    if activations and [a.lower() for a in activations] != ["sigmoid", "tanh"]:
        raise ConversionError(f"GRU activations {activations}: only the default Sigmoid, Tanh are supported")
    if node.attr("clip") is not None:
        raise ConversionError("GRU with clip is not supported")
    w = ctx.static(node, 1, "GRU weight W")
    r = ctx.static(node, 2, "GRU recurrence weight R")
    b = ctx.static(node, 3, "GRU bias B")
    if ctx.input(node, 4) is not None:
        raise ConversionError("GRU with sequence_lens is not supported; mask the sequence instead")
    h0 = ctx.input(node, 5)
    nonzero_h0 = h0 is not None and (bool(np.asarray(h0).any()) if isinstance(h0, np.ndarray)
                                      else not is_zero(ctx.graph, ctx.as_value(h0)))
    if nonzero_h0:
        raise ConversionError("GRU with a non-zero initial_h is not supported")
    hidden = hidden or r.shape[-1]
    bias = b.reshape(-1) if b is not None else np.zeros(6 * hidden, np.float32)
    x = ctx.value(node, 0, "float32")
    layout = int(node.attr("layout", 0))
    if x.type.rank != 3:
        raise ConversionError(f"GRU input must be rank 3, got {x.type}")
    batch_first = x if layout == 1 else ctx.emit("permute", [x], perm=(1, 0, 2))
    w_ih = ctx.derived_param(w, ("gru-w", hidden), node.inputs[1] or "gru_w", lambda: _reorder(w[0], hidden))
    b_ih = ctx.derived_param(bias, ("gru-wb", hidden), "gru_wb", lambda: _reorder(bias[:3 * hidden], hidden))
    w_hh = ctx.derived_param(r, ("gru-r", hidden), node.inputs[2] or "gru_r", lambda: _reorder(r[0], hidden))
    b_hh = ctx.derived_param(bias, ("gru-rb", hidden), "gru_rb", lambda: _reorder(bias[3 * hidden:], hidden))
    projected = ctx.emit("dense", [batch_first, w_ih, b_ih], activation="none")
    states = ctx.emit("gru", [projected, w_hh, b_hh])  # [B, L, H]
    batch, length = states.type.shape[0], states.type.shape[1]
    last = ctx.emit("slice", [states], axis=1, start=length - 1, end=length, step=1)
    y_h = ctx.emit("reshape", [last], shape=(1, batch, hidden))
    if layout == 1:
        y = ctx.emit("reshape", [states], shape=(batch, length, 1, hidden))
    else:
        y = ctx.emit("reshape", [ctx.emit("permute", [states], perm=(1, 0, 2))], shape=(length, 1, batch, hidden))
    return [y, y_h]


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {"GRU": _gru}
