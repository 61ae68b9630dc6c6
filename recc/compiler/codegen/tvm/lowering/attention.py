"""target_attention (DIN's attention unit, its MLP weights packed for the kernel's register tiles) and
attention (scaled dot product): recc's attention kernels (kernels/cpu/attention.py)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu import attention as attention_kernels
from recc.compiler.codegen.tvm.kernels.cpu.common import pad_vector
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Node


def lower_target_attention(lw: LoweringContext, node: Node) -> relax.Expr:
    keys = node.inputs[0]
    has_bias = bool(node.attrs.get("has_score_bias"))
    params = [np.asarray(lw.graph.param_array(v), np.float32) for v in node.inputs[2 + has_bias:]]
    _, seq, dim = keys.type.shape
    widths = tuple(int(w.shape[0]) for w in params[0::2])
    activations = tuple(node.attrs["activations"])
    fn = lw.kernel(("target_attention", seq, dim, widths, activations, has_bias),
                   lambda: attention_kernels.target_attention(seq, dim, widths, activations, has_bias))
    w1q, w1u = attention_kernels.pack_first_layer(params[0], dim)
    w_all, b_all = attention_kernels.pack_hidden_layers(w1u, list(zip(params[2:-2:2], params[3:-2:2])))
    name = node.output.name
    packed = [lw.weight(f"{name}__w1q", lambda: w1q), lw.weight(f"{name}__b1", lambda: pad_vector(params[1])),
              lw.weight(f"{name}__w_all", lambda: w_all), lw.weight(f"{name}__b_all", lambda: b_all),
              lw.weight(f"{name}__w_last", lambda: params[-2].reshape(-1).copy()),
              lw.weight(f"{name}__b_last", lambda: params[-1].reshape(-1).copy())]
    data = [lw.value(v) for v in node.inputs[:2 + has_bias]]
    return lw.emit(relax.call_tir(fn, data + packed, lw.struct(node.output)))


def lower_attention(lw: LoweringContext, node: Node) -> relax.Expr:
    """[..., L, d] operands viewed as [g, L, d] (g = the leading dims' product; any bias broadcast first)."""
    q, k, v = node.inputs[:3]
    if q.type.dtype != "float32" or any(not isinstance(d, int) for t in (q, k, v) for d in t.type.shape[-2:]):
        raise NotImplementedError("codegen: attention needs float32 and static sequence/head dims")
    groups = lw.product(q.type.shape[:-2])
    (lq, dim), (lk, dv) = q.type.shape[-2:], v.type.shape[-2:]
    args = lw.args(node)
    views = [lw.emit(relax.op.reshape(a, [groups, lw.dim(t.type.shape[-2]), lw.dim(t.type.shape[-1])]))
             for a, t in zip(args[:3], (q, k, v))]
    if len(args) == 4:
        full = [lw.dim(d) for d in q.type.shape[:-1]] + [lw.dim(lk)]
        views.append(lw.emit(relax.op.reshape(relax.op.broadcast_to(args[3], full),
                                              [groups, lw.dim(lq), lw.dim(lk)])))
    scale = float(node.attrs["scale"])
    fn = lw.kernel(("attention", lq, lk, dim, dv, scale, len(args) == 4),
                   lambda: attention_kernels.scaled_dot_product_attention(lq, lk, dim, dv, scale,
                                                                          len(args) == 4))
    out = lw.emit(relax.call_tir(fn, views, relax.TensorType([groups, lw.dim(lq), lw.dim(dv)], "float32")))
    return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))


LOWERINGS = {"target_attention": lower_target_attention, "attention": lower_attention}
