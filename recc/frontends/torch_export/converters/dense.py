"""Dense algebra: linear, addmm, matmul, recurrent cells and scaled dot-product attention."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value, is_zero
from recc.frontends.torch_export.converters.context import (
    ConversionError,
    Ctx,
    converts,
)


@converts("linear.default")
def _linear(ctx: Ctx, node: torch.fx.Node, x: Any, w: Any, b: Any = None) -> Value:
    xv, wv = ctx.value(x), ctx.value(w)
    if wv.type.rank == 1 or not wv.type.dtype.startswith("float"):  # a vector weight, or integer data
        out = _matmul(ctx, node, x, None, bv=ctx.emit("permute", [wv], perm=(1, 0)) if wv.type.rank == 2 else wv)
        return out if b is None else ctx.emit("add", [out, ctx.value(b)])
    flat = xv.type.rank == 1  # one sample [K]: dense over [1, K]
    xv = ctx.emit("reshape", [xv], shape=(1,) + xv.type.shape) if flat else xv
    inputs = [xv, wv] + ([ctx.value(b)] if b is not None else [])
    out = ctx.emit("dense", inputs, activation="none")
    return ctx.emit("reshape", [out], shape=out.type.shape[1:]) if flat else out


@converts("addmm.default")
def _addmm(ctx: Ctx, node: torch.fx.Node, bias: Any, a: Any, b: Any, beta: Any = 1, alpha: Any = 1) -> Value:
    product = ctx.emit("matmul", [ctx.value(a), ctx.value(b)])
    if alpha != 1:
        product = ctx.emit("mul", [product, ctx.const(alpha, product.type.dtype)])
    bias_v = ctx.value(bias)
    if beta != 1:
        bias_v = ctx.emit("mul", [bias_v, ctx.const(beta, bias_v.type.dtype)])
    return ctx.emit("add", [product, bias_v])


@converts("mm.default", "bmm.default", "matmul.default")
def _matmul(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any, bv: Value | None = None) -> Value:
    """torch.matmul: a 1-D operand is a row (left) or a column (right), squeezed out of the result."""
    av, bv = ctx.value(a), bv if bv is not None else ctx.value(b)
    row, col = av.type.rank == 1, bv.type.rank == 1
    if row:
        av = ctx.emit("reshape", [av], shape=(1,) + av.type.shape)
    if col:
        bv = ctx.emit("reshape", [bv], shape=bv.type.shape + (1,))
    out = ctx.emit("matmul", [av, bv])
    if row or col:
        shape = out.type.shape
        out = ctx.emit("reshape", [out], shape=shape[:-2] + (() if row else (shape[-2],)) + (() if col else
                                                                                               (shape[-1],)))
    return out


@converts("gru.input")
def _gru(ctx: Ctx, node: torch.fx.Node, x: Any, hx: Any, params: Any, has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> tuple[Value, Value]:
    """nn.GRU (eval, unidirectional, zero initial state): per layer, the input projection of all steps as
    one dense, then a `gru` op over the sequence. Returns (every step's output, final state per layer)."""
    if bidirectional:
        raise ConversionError("bidirectional GRU is not supported")
    if not is_zero(ctx.graph, ctx.value(hx)):
        raise ConversionError("GRU with a non-zero initial state hx is not supported")
    seq = ctx.value(x)
    if seq.type.rank != 3:
        raise ConversionError(f"GRU input must be batched [B, L, I] or [L, B, I], got {seq.type}")
    if not batch_first:
        seq = ctx.emit("permute", [seq], perm=(1, 0, 2))
    weights = [ctx.value(p) for p in params]
    per_layer = 4 if has_biases else 2
    finals = []
    for layer in range(num_layers):
        w_ih, w_hh, *biases = weights[layer * per_layer:(layer + 1) * per_layer]
        hidden = w_hh.type.shape[1]
        b_ih, b_hh = biases if biases else (None, ctx.const(np.zeros(3 * hidden), "float32"))
        projected = ctx.emit("dense", [seq, w_ih] + ([b_ih] if b_ih is not None else []), activation="none")
        seq = ctx.emit("gru", [projected, w_hh, b_hh])
        last = ctx.emit("slice", [seq], axis=1, start=seq.type.shape[1] - 1, end=seq.type.shape[1], step=1)
        finals.append(ctx.emit("reshape", [last], shape=(1, seq.type.shape[0], hidden)))
    out = seq if batch_first else ctx.emit("permute", [seq], perm=(1, 0, 2))
    h_n = finals[0] if len(finals) == 1 else ctx.emit("concat", finals, axis=0)
    return out, h_n


@converts("scaled_dot_product_attention.default")
def _scaled_dot_product_attention(ctx: Ctx, node: torch.fx.Node, q: Any, k: Any, v: Any, attn_mask: Any = None,
                                  dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                  enable_gqa: bool = False) -> Value:
    """Spelled out as softmax(q k^T * scale [+ mask]) v; the fuse-attention pass makes it one op again
    (so the same rule serves models that write the math by hand)."""
    if dropout_p:
        raise ConversionError("scaled_dot_product_attention with dropout_p > 0 (random at every call)")
    qv, kv, vv = ctx.value(q), ctx.value(k), ctx.value(v)
    if enable_gqa:  # each group of query heads reads one key/value head: heads repeated as torch does
        kv, vv = (_repeat_heads(ctx, t, qv.type.shape[-3]) for t in (kv, vv))
    rank = kv.type.rank
    transposed = ctx.emit("permute", [kv], perm=tuple(range(rank - 2)) + (rank - 1, rank - 2))
    head_dim = qv.type.shape[-1]
    factor = scale if scale is not None else 1.0 / math.sqrt(head_dim)
    scores = ctx.emit("mul", [ctx.emit("matmul", [qv, transposed]), ctx.const(factor, qv.type.dtype)])
    if attn_mask is not None:
        mask = ctx.value(attn_mask)
        if mask.type.dtype == "bool":
            scores = ctx.emit("where", [mask, scores, ctx.const(-np.inf, qv.type.dtype)])
        else:
            scores = ctx.emit("add", [scores, mask])
    if is_causal:  # top-left aligned lower triangle, as torch (q position i sees keys 0..i)
        lq, lk = scores.type.shape[-2:]
        if not isinstance(lq, int) or not isinstance(lk, int):
            raise ConversionError("scaled_dot_product_attention is_causal over symbolic sequence lengths")
        keep = ctx.graph.add_param("causal_mask", np.tril(np.ones((lq, lk), dtype=bool)))
        scores = ctx.emit("where", [keep, scores, ctx.const(-np.inf, qv.type.dtype)])
    weights = ctx.emit("softmax", [scores], axis=scores.type.rank - 1)
    return ctx.emit("matmul", [weights, vv])


def _repeat_heads(ctx: Ctx, t: Value, heads: Any) -> Value:
    have = t.type.shape[-3] if t.type.rank >= 3 else None
    if not isinstance(heads, int) or not isinstance(have, int) or heads % have:
        raise ConversionError(f"enable_gqa: {heads} query heads are not a multiple of {have} key/value heads")
    index = ctx.graph.add_param("gqa_heads", np.arange(heads, dtype=np.int64) // (heads // have))
    return ctx.emit("take", [t, index], axis=t.type.rank - 3, wrap=False)


@converts("convolution.default", "conv1d.default", "conv2d.default")
def _convolution(ctx: Ctx, node: torch.fx.Node, x: Any, weight: Any, bias: Any = None, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, *rest: Any) -> Value:
    """A pointwise (1x1) convolution — xDeepFM's CIN, 1x1 projections — as a dense layer over channels-last
    data (so the dense fusions apply); any other as the IR's `conv`, a transposed one as `conv_transpose`."""
    transposed, groups = (rest[0], rest[2]) if len(rest) >= 3 else (False, rest[0] if rest else 1)
    xv, wv = ctx.value(x), ctx.value(weight)
    spatial = wv.type.shape[2:]

    def values(v: Any) -> list[Any]:
        return list(v) if isinstance(v, (list, tuple)) else [v]

    nd = len(spatial)
    if transposed or groups != 1 or any(d != 1 for d in spatial) or any(s != 1 for s in values(stride)) \
            or any(p != 0 for p in values(padding)) or not xv.type.dtype.startswith("float"):
        if isinstance(padding, str):
            raise ConversionError(f"convolution padding={padding!r}")
        unbatched = xv.type.rank == nd + 1  # [C, *S]: one sample
        if unbatched:
            xv = ctx.emit("reshape", [xv], shape=(1,) + xv.type.shape)
        settings = (("stride", stride), ("padding", padding), ("dilation", dilation)) + (
            (("output_padding", rest[1]),) if transposed else ())
        attrs = {k: tuple(int(v) for v in values(v)) * (nd if len(values(v)) == 1 else 1) for k, v in settings}
        inputs = [xv, wv] + ([ctx.value(bias)] if bias is not None else [])
        out = ctx.emit("conv_transpose" if transposed else "conv", inputs, groups=int(groups), **attrs)
        return ctx.emit("reshape", [out], shape=out.type.shape[1:]) if unbatched else out
    rank = xv.type.rank
    to_last = ctx.emit("permute", [xv], perm=(0, *range(2, rank), 1))
    w2 = ctx.emit("reshape", [wv], shape=wv.type.shape[:2])
    inputs = [to_last, w2] + ([ctx.value(bias)] if bias is not None else [])
    out = ctx.emit("dense", inputs)
    return ctx.emit("permute", [out], perm=(0, rank - 1, *range(1, rank - 1)))


def _batched(ctx: Ctx, xv: Value, nd: int, emit: Any) -> Any:
    """emit(x) on x [N, C, *S]; an unbatched [C, *S] input goes through as one sample and comes back so."""
    if xv.type.rank != nd + 1:
        return emit(xv)
    outs = emit(ctx.emit("reshape", [xv], shape=(1,) + xv.type.shape))
    single = not isinstance(outs, tuple)
    outs = tuple(ctx.emit("reshape", [o], shape=o.type.shape[1:]) for o in ((outs,) if single else outs))
    return outs[0] if single else outs


def _pool(ctx: Ctx, node: torch.fx.Node, kind: str, x: Any, kernel: Any, stride: Any, padding: Any,
          dilation: Any, ceil_mode: bool, count_include_pad: bool = True, divisor: Any = None,
          indices: bool = False) -> Any:
    nd = len(kernel)

    def per_axis(v: Any, default: Any) -> tuple[int, ...]:
        v = default if v in (None, [], ()) else v
        v = list(v) if isinstance(v, (list, tuple)) else [v]
        return tuple(int(e) for e in (v * nd if len(v) == 1 else v))

    attrs = dict(kind=kind, kernel=per_axis(kernel, 1), stride=per_axis(stride, kernel), padding=per_axis(padding, 0),
                 dilation=per_axis(dilation, 1), ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                 divisor=divisor)
    return _batched(ctx, ctx.value(x), nd, lambda v: (ctx.emit("pool", [v], **attrs), ctx.emit(
        "pool_indices", [v], **attrs)) if indices else ctx.emit("pool", [v], **attrs))


@converts("max_pool2d_with_indices.default", "max_pool3d_with_indices.default", "max_pool1d.default",
          "max_pool2d.default", "max_pool3d.default")
def _max_pool(ctx: Ctx, node: torch.fx.Node, x: Any, kernel: Any, stride: Any = None, padding: Any = 0,
              dilation: Any = 1, ceil_mode: bool = False) -> Any:
    """Max pooling; the *_with_indices forms also return where each maximum is (the `pool_indices` op)."""
    indices = "with_indices" in node.target._schema.name
    return _pool(ctx, node, "max", x, kernel, stride, padding, dilation, ceil_mode, indices=indices)


@converts("_adaptive_avg_pool2d.default", "_adaptive_avg_pool3d.default", "adaptive_max_pool2d.default",
          "adaptive_max_pool3d.default", "adaptive_max_pool1d.default")
def _adaptive_pool(ctx: Ctx, node: torch.fx.Node, x: Any, output_size: Any) -> Any:
    """Adaptive pooling; the max forms return (values, indices)."""
    size = tuple(int(n) for n in output_size)
    if "max" in node.target._schema.name:
        return _batched(ctx, ctx.value(x), len(size), lambda v: (
            ctx.emit("adaptive_pool", [v], kind="max", output_size=size),
            ctx.emit("adaptive_pool_indices", [v], output_size=size)))
    return _batched(ctx, ctx.value(x), len(size), lambda v: ctx.emit("adaptive_pool", [v], kind="avg",
                                                                      output_size=size))


@converts("avg_pool1d.default", "avg_pool2d.default", "avg_pool3d.default")
def _avg_pool(ctx: Ctx, node: torch.fx.Node, x: Any, kernel: Any, stride: Any = None, padding: Any = 0,
              ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None) -> Value:
    return _pool(ctx, node, "avg", x, kernel, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)


@converts("_cdist_forward.default")
def _cdist(ctx: Ctx, node: torch.fx.Node, x1: Any, x2: Any, p: float, compute_mode: Any = None) -> Value:
    """p-norm distances between the rows of x1 [..., P, M] and x2 [..., R, M], from the broadcast
    differences [..., P, R, M] (exact for every p; torch's matmul form for p = 2 differs by rounding)."""
    a, b = ctx.value(x1), ctx.value(x2)
    rank = a.type.rank
    left = ctx.emit("reshape", [a], shape=a.type.shape[:-1] + (1, a.type.shape[-1]))
    right = ctx.emit("reshape", [b], shape=b.type.shape[:-2] + (1,) + b.type.shape[-2:])
    diff = ctx.emit("abs", [ctx.emit("sub", [left, right])])
    reduce = dict(axes=(rank,), keepdims=False)
    dtype = a.type.dtype
    if p == 0:
        return ctx.emit("sum", [ctx.as_dtype(ctx.emit("ne", [diff, ctx.const(0, dtype)]), dtype)], **reduce)
    if p == math.inf:
        return ctx.emit("max", [diff], **reduce)
    if p == 1:
        return ctx.emit("sum", [diff], **reduce)
    if p == 2:
        return ctx.emit("sqrt", [ctx.emit("sum", [ctx.emit("mul", [diff, diff])], **reduce)])
    powered = ctx.emit("sum", [ctx.emit("pow", [diff, ctx.const(p, dtype)])], **reduce)
    return ctx.emit("pow", [powered, ctx.const(1.0 / p, dtype)])
