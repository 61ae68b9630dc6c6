"""Every op without a recc kernel: Relax operators, legalized by TVM's defaults.

IEEE semantics as eager PyTorch: TVM legalizes max / min (relu, clip, maximum, the max and min reductions)
to selects on a comparison, which drop a NaN operand; those ops are spelled here so that NaN propagates
(relu(NaN) = clamp(NaN) = maximum(NaN, y) = max over a row with NaN = NaN), and gelu (erf) is NaN at
+-inf as torch's CPU kernel."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.lowering.checks import guarded_args
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.lowering.math import int_power
from recc.compiler.ir import Node
from recc.compiler.ir.types import is_float


def _const(value: float, like: relax.Expr) -> relax.Expr:
    return relax.const(value, like.ty.dtype)


def _relu(x: relax.Expr) -> relax.Expr:
    """where(x < 0, 0, x): NaN stays NaN (relax's relu is max(x, 0), a select on x > 0)."""
    return relax.op.where(relax.op.less(x, _const(0.0, x)), _const(0.0, x), x)


def _gelu(x: relax.Expr) -> relax.Expr:
    return relax.op.where(relax.op.isinf(x), _const(float("nan"), x), relax.op.nn.gelu(x))


def _clip(x: relax.Expr, lo: float | None, hi: float | None) -> relax.Expr:
    """min(max(x, lo), hi) with NaN kept (torch.clamp)."""
    out = x if lo is None else relax.op.where(relax.op.less(x, _const(lo, x)), _const(lo, x), x)
    return out if hi is None else relax.op.where(relax.op.greater(x, _const(hi, x)), _const(hi, x), out)


def _extremum(op: str, x: relax.Expr, y: relax.Expr) -> relax.Expr:
    """maximum / minimum, NaN if either operand is (torch.maximum)."""
    both = relax.op.maximum(x, y) if op == "maximum" else relax.op.minimum(x, y)
    return relax.op.where(relax.op.isnan(x), x, relax.op.where(relax.op.isnan(y), y, both))


def _reduce_extremum(op: str, x: relax.Expr, axes: list[int], keepdims: bool) -> relax.Expr:
    """max / min over axes, NaN where the reduced elements hold one (torch.amax)."""
    nans = relax.op.sum(relax.op.astype(relax.op.isnan(x), x.ty.dtype), axis=axes, keepdims=keepdims)
    reduced = REDUCTIONS[op](x, axis=axes, keepdims=keepdims)
    return relax.op.where(relax.op.greater(nans, _const(0.0, x)), _const(float("nan"), x), reduced)


ACTIVATIONS: dict[str, Callable[[relax.Expr, dict[str, Any]], relax.Expr]] = {
    "relu": lambda x, a: _relu(x),
    "sigmoid": lambda x, a: relax.op.sigmoid(x),
    "tanh": lambda x, a: relax.op.tanh(x),
    "gelu": lambda x, a: _gelu(x),
    "gelu_tanh": lambda x, a: relax.op.nn.gelu_tanh(x),
    "silu": lambda x, a: relax.op.nn.silu(x),
    "leaky_relu": lambda x, a: relax.op.nn.leakyrelu(x, a.get("alpha", 0.01)),
}

SIMPLE: dict[str, Callable[..., relax.Expr]] = {
    "add": relax.op.add, "sub": relax.op.subtract, "mul": relax.op.multiply, "div": relax.op.divide,
    "maximum": relax.op.maximum, "minimum": relax.op.minimum, "pow": relax.op.power,
    "gt": relax.op.greater, "ge": relax.op.greater_equal, "lt": relax.op.less, "le": relax.op.less_equal,
    "eq": relax.op.equal, "ne": relax.op.not_equal, "where": relax.op.where,
    "exp": relax.op.exp, "log": relax.op.log, "neg": relax.op.negative, "sqrt": relax.op.sqrt,
    "rsqrt": relax.op.rsqrt, "abs": relax.op.abs, "erf": relax.op.erf, "logical_not": relax.op.logical_not,
    "matmul": relax.op.matmul,
}

REDUCTIONS = {"sum": relax.op.sum, "mean": relax.op.mean, "max": relax.op.max, "min": relax.op.min}


def lower_generic(lw: LoweringContext, node: Node) -> relax.Expr:
    args, a, op = lw.args(node), node.attrs, node.op
    out_shape = [lw.dim(d) for d in node.output.type.shape]
    floating = is_float(node.output.type.dtype)
    if op in ("maximum", "minimum") and floating:
        return lw.emit(_extremum(op, *args))
    if op in ("max", "min") and floating:
        return lw.emit(_reduce_extremum(op, args[0], list(a["axes"]), a.get("keepdims", False)))
    if op == "clamp" and floating:
        return lw.emit(_clip(args[0], a.get("min"), a.get("max")))
    if op == "pow" and not floating:
        bits = int("".join(c for c in node.output.type.dtype if c.isdigit()) or 8)
        return lw.emit(int_power(args[0], args[1], bits))
    if op in SIMPLE:
        return lw.emit(SIMPLE[op](*args))
    if op in ACTIVATIONS:
        name = "gelu_tanh" if op == "gelu" and a.get("approximate") == "tanh" else op
        return lw.emit(ACTIVATIONS[name](args[0], a))
    if op == "reciprocal":
        return lw.emit(relax.op.divide(relax.const(1.0, node.output.type.dtype), args[0]))
    if op == "clamp":
        lo = -np.inf if a.get("min") is None else a["min"]
        hi = np.inf if a.get("max") is None else a["max"]
        return lw.emit(relax.op.clip(args[0], lo, hi))
    if op == "softmax":
        return lw.emit(relax.op.nn.softmax(args[0], axis=a["axis"]))
    if op == "log_softmax":
        return lw.emit(relax.op.nn.log_softmax(args[0], axis=a["axis"]))
    if op == "concat":
        return lw.emit(relax.op.concat(args, axis=a["axis"]))
    if op == "reshape":
        return lw.emit(relax.op.reshape(args[0], out_shape))
    if op == "permute":
        return lw.emit(relax.op.permute_dims(args[0], list(a["perm"])))
    if op == "slice":
        size = node.inputs[0].type.shape[a["axis"]]
        end = a["end"] if a["end"] is not None else size
        return lw.emit(relax.op.strided_slice(args[0], [a["axis"]], [a["start"]],
                                              [lw.dim(end) if not isinstance(end, int) else end],
                                              [a.get("step", 1)]))
    if op == "take":  # indices proven or checked in range (and wrapped) by guarded_args
        table, index = guarded_args(lw, node)
        return lw.emit(relax.op.take(table, index, axis=a["axis"], mode="clip"))
    if op == "gather":  # torch.gather, indices checked by guarded_args
        data, index = guarded_args(lw, node)
        return lw.emit(relax.op.gather_elements(data, index, axis=a["axis"]))
    if op == "scatter":  # indices checked by guarded_args
        data, index, src = guarded_args(lw, node)
        reduction = {"none": "update", "sum": "add", "prod": "mul", "amax": "max", "amin": "min"}[a.get("reduce", "none")]
        return lw.emit(relax.op.scatter_elements(data, index, src, axis=a["axis"], reduction=reduction))
    if op == "expand":
        return lw.emit(relax.op.broadcast_to(args[0], out_shape))
    if op in REDUCTIONS:
        return lw.emit(REDUCTIONS[op](args[0], axis=list(a["axes"]), keepdims=a.get("keepdims", False)))
    if op == "cast":
        return lw.emit(relax.op.astype(args[0], a["dtype"]))
    raise NotImplementedError(f"codegen: no lowering for op {op!r}")
