"""Every op without a recc kernel: Relax operators, legalized by TVM's defaults."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.lowering.checks import guarded_args
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Node

ACTIVATIONS: dict[str, Callable[[relax.Expr, dict[str, Any]], relax.Expr]] = {
    "relu": lambda x, a: relax.op.nn.relu(x),
    "sigmoid": lambda x, a: relax.op.sigmoid(x),
    "tanh": lambda x, a: relax.op.tanh(x),
    "gelu": lambda x, a: relax.op.nn.gelu(x),
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
    if op == "expand":
        return lw.emit(relax.op.broadcast_to(args[0], out_shape))
    if op in REDUCTIONS:
        return lw.emit(REDUCTIONS[op](args[0], axis=list(a["axes"]), keepdims=a.get("keepdims", False)))
    if op == "cast":
        return lw.emit(relax.op.astype(args[0], a["dtype"]))
    raise NotImplementedError(f"codegen: no lowering for op {op!r}")
