"""Elementwise ATen ops: arithmetic and comparisons with torch's type promotion, activations, norms."""

from __future__ import annotations

from typing import Any

import torch

from recc.compiler.ir import Value
from recc.compiler.ir.types import is_float
from recc.frontends.torch_export.converters.context import (
    TORCH_TO_IR_DTYPE,
    ConversionError,
    Ctx,
    Lazy,
    converts,
    ir_dtype,
)


def _binary(op: str, swap: bool = False):
    def convert(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any, alpha: Any = 1, **kw: Any) -> Value:
        dtype = ctx.out_dtype(node)
        compute = dtype
        if dtype == "bool":  # comparisons: compare in the promoted dtype of the operands
            ta = node.args[0].meta["val"].dtype if isinstance(a, torch.fx.Node) else None
            tb = node.args[1].meta["val"].dtype if isinstance(b, torch.fx.Node) else None
            ref = ta or tb
            other = tb if ta is not None else None
            compute = ir_dtype(torch.promote_types(ref, other) if other is not None else ref)
            if isinstance(b if ta else a, float) and not is_float(compute):
                compute = "float32"
        x, y = ctx.operand(a, compute), ctx.operand(b, compute)
        if alpha != 1:
            y = ctx.emit("mul", [y, ctx.const(alpha, compute)])
        if swap:
            x, y = y, x
        return ctx.emit(op, [x, y])
    return convert


for _names, _op in ((("add.Tensor", "add.Scalar"), "add"), (("sub.Tensor", "sub.Scalar"), "sub"),
                    (("mul.Tensor", "mul.Scalar"), "mul"), (("div.Tensor", "div.Scalar"), "div"),
                    (("maximum.default",), "maximum"), (("minimum.default",), "minimum"),
                    (("pow.Tensor_Scalar", "pow.Tensor_Tensor"), "pow"),
                    (("gt.Tensor", "gt.Scalar"), "gt"), (("ge.Tensor", "ge.Scalar"), "ge"),
                    (("lt.Tensor", "lt.Scalar"), "lt"), (("le.Tensor", "le.Scalar"), "le"),
                    (("eq.Tensor", "eq.Scalar"), "eq"), (("ne.Tensor", "ne.Scalar"), "ne")):
    converts(*_names)(_binary(_op))
converts("rsub.Tensor", "rsub.Scalar")(_binary("sub", swap=True))


def _unary(op: str, **fixed: Any):
    def convert(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any, **kw: Any) -> Value:
        return ctx.emit(op, [ctx.as_dtype(ctx.value(x), ctx.out_dtype(node))], **fixed)
    return convert


for _name in ("relu", "sigmoid", "tanh", "exp", "log", "neg", "sqrt", "rsqrt", "abs", "erf", "silu",
              "reciprocal"):
    converts(f"{_name}.default", f"{_name}_.default")(_unary(_name))
converts("logical_not.default")(_unary("logical_not"))


@converts("gelu.default")
def _gelu(ctx: Ctx, node: torch.fx.Node, x: Any, approximate: str = "none") -> Value:
    return ctx.emit("gelu", [ctx.value(x)], approximate=approximate)


@converts("leaky_relu.default")
def _leaky_relu(ctx: Ctx, node: torch.fx.Node, x: Any, negative_slope: float = 0.01) -> Value:
    return ctx.emit("leaky_relu", [ctx.value(x)], alpha=float(negative_slope))


@converts("clamp.default", "clamp_min.default", "clamp_max.default", "hardtanh.default")
def _clamp(ctx: Ctx, node: torch.fx.Node, x: Any, lo: Any = None, hi: Any = None) -> Value:
    name = node.target._schema.name
    if name.endswith("clamp_max"):
        lo, hi = None, lo
    if name.endswith("hardtanh"):
        lo = -1.0 if lo is None else lo
        hi = 1.0 if hi is None else hi
    return ctx.emit("clamp", [ctx.value(x)], min=lo, max=hi)


@converts("threshold.default")
def _threshold(ctx: Ctx, node: torch.fx.Node, x: Any, threshold: Any, value: Any) -> Value:
    """threshold(x, t, v) = v if x <= t else x (NaN stays NaN, as in torch), spelled as where(x <= t, v, x)
    (canonicalize-activations recognizes relu in it)."""
    xv = ctx.value(x)
    dtype = xv.type.dtype
    at_most = ctx.emit("le", [xv, ctx.operand(threshold, dtype)])
    return ctx.emit("where", [at_most, ctx.operand(value, dtype), xv])


@converts("batch_norm.default", "_native_batch_norm_legit_no_training.default")
def _batch_norm(ctx: Ctx, node: torch.fx.Node, x: Any, weight: Any, bias: Any, running_mean: Any,
                running_var: Any, *rest: Any) -> Any:
    """Eval-mode batch norm, spelled out: (x - mean) / sqrt(var + eps) * weight + bias, statistics broadcast
    on axis 1 (canonicalize-dense folds it into a dense layer that precedes it)."""
    decomposed = node.target._schema.name.endswith("no_training")
    training, eps = (False, rest[1]) if decomposed else (rest[0], rest[2])
    if training or running_mean is None or running_var is None:
        raise ConversionError("batch_norm in training mode (or without running statistics) is not supported")
    xv = ctx.value(x)
    rank = xv.type.rank

    def per_channel(a: Any) -> Value:
        v = ctx.value(a)
        return v if rank <= 2 else ctx.emit("reshape", [v], shape=v.type.shape + (1,) * (rank - 2))

    centered = ctx.emit("sub", [xv, per_channel(running_mean)])
    std = ctx.emit("sqrt", [ctx.emit("add", [per_channel(running_var), ctx.const(eps, xv.type.dtype)])])
    out = ctx.emit("div", [centered, std])
    if weight is not None:
        out = ctx.emit("mul", [out, per_channel(weight)])
    if bias is not None:
        out = ctx.emit("add", [out, per_channel(bias)])
    if decomposed:
        unused = Lazy("a batch_norm auxiliary output", ("nothing (it is for training only)",))
        return (out, unused, unused)
    return out


@converts("where.self", "where.ScalarOther", "where.ScalarSelf", "where.Scalar")
def _where(ctx: Ctx, node: torch.fx.Node, cond: Any, a: Any, b: Any) -> Value:
    dtype = ctx.out_dtype(node)
    return ctx.emit("where", [ctx.value(cond), ctx.operand(a, dtype), ctx.operand(b, dtype)])


@converts("masked_fill.Scalar", "masked_fill.Tensor")
def _masked_fill(ctx: Ctx, node: torch.fx.Node, x: Any, mask: Any, value: Any) -> Value:
    xv = ctx.value(x)
    return ctx.emit("where", [ctx.value(mask), ctx.operand(value, xv.type.dtype), xv])


@converts("softmax.int", "_softmax.default", "log_softmax.int", "_log_softmax.default")
def _softmax(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, *rest: Any) -> Value:
    op = "log_softmax" if "log_softmax" in node.target._schema.name else "softmax"
    xv = ctx.as_dtype(ctx.value(x), ctx.out_dtype(node))  # softmax(x, dtype=...) computes in that dtype
    if xv.type.rank == 0:  # softmax of a scalar is 1 (log: 0), NaN stays NaN
        xv = ctx.emit("reshape", [xv], shape=(1,))
        return ctx.emit("reshape", [ctx.emit(op, [xv], axis=0)], shape=())
    return ctx.emit(op, [xv], axis=dim % xv.type.rank)
