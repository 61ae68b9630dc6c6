"""Gemm and MatMul. A constant right-hand weight becomes IR `dense(x, w [N, K], b)` (the weight transposed
at import time when the graph stores it as [K, N]; Gemm's alpha and beta folded into weight and bias);
anything else becomes `matmul` (+ mul / add)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Value
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, is_static


def _constant_matrix(ctx: Ctx, v: Any) -> np.ndarray | None:
    if is_static(v) and v.dtype != object:
        return v
    if isinstance(v, Value) and v.kind == "param":
        return ctx.graph.param_array(v)
    return None


def _bias(c: np.ndarray | None, n: int, beta: float, dtype: str) -> np.ndarray | None:
    """Gemm's C as a [N] bias vector when it broadcasts along rows only, else None."""
    if c is None:
        return None
    if c.size == 1:
        return np.full((n,), float(np.ravel(c)[0]) * beta, dtype=dtype)
    if c.shape in ((n,), (1, n)):
        return (np.ravel(c) * beta).astype(dtype)
    return None


def _gemm(ctx: Ctx, node: OnnxNode) -> Value:
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    a = ctx.value(node, 0)
    weight = _constant_matrix(ctx, ctx.input(node, 1))
    c_input = ctx.input(node, 2)
    c_const = _constant_matrix(ctx, c_input) if c_input is not None else None
    if weight is not None and weight.ndim == 2 and not trans_a and (c_input is None or c_const is not None):
        w = weight if trans_b else weight.T
        n = w.shape[0]
        bias = _bias(c_const, n, beta, a.type.dtype)
        if c_const is None or bias is not None:
            w = (w * alpha if alpha != 1.0 else w).astype(a.type.dtype)
            dtype = a.type.dtype
            inputs = [a, ctx.derived_param(weight, ("gemm-weight", trans_b, alpha, dtype), node.inputs[1] or "weight",
                                           lambda: np.ascontiguousarray(w))]
            if bias is not None:
                inputs.append(ctx.derived_param(c_const, ("gemm-bias", n, beta, dtype), node.inputs[2] or "bias",
                                                lambda: bias))
            return ctx.emit("dense", inputs, activation="none")
    return _generic_gemm(ctx, node, alpha, beta, trans_a, trans_b)


def _generic_gemm(ctx: Ctx, node: OnnxNode, alpha: float, beta: float, trans_a: int, trans_b: int) -> Value:
    a, b = ctx.value(node, 0), ctx.value(node, 1)
    if trans_a:
        a = ctx.emit("permute", [a], perm=(1, 0))
    if trans_b:
        b = ctx.emit("permute", [b], perm=(1, 0))
    out = ctx.emit("matmul", [a, b])
    if alpha != 1.0:
        out = ctx.emit("mul", [out, ctx.const(alpha, out.type.dtype)])
    if ctx.input(node, 2) is not None:
        c = ctx.value(node, 2, out.type.dtype)
        if beta != 1.0:
            c = ctx.emit("mul", [c, ctx.const(beta, out.type.dtype)])
        out = ctx.emit("add", [out, c])
    return out


def _matmul(ctx: Ctx, node: OnnxNode) -> Value:
    a = ctx.value(node, 0)
    weight = _constant_matrix(ctx, ctx.input(node, 1))
    if weight is not None and weight.ndim == 2 and a.type.rank >= 2:
        w = ctx.derived_param(weight, ("matmul-weight", a.type.dtype), node.inputs[1] or "weight",
                              lambda: np.ascontiguousarray(weight.T.astype(a.type.dtype)))
        return ctx.emit("dense", [a, w], activation="none")
    b = ctx.value(node, 1, a.type.dtype)
    if a.type.rank == 0 or b.type.rank == 0:
        raise ConversionError("MatMul of a scalar")
    if a.type.rank >= 2 and b.type.rank >= 2:
        return ctx.emit("matmul", [a, b])
    # numpy's 1-D rules: a vector on the left is a row [1, K], on the right a column [K, 1]; the added
    # axis is dropped from the result
    a2 = ctx.emit("reshape", [a], shape=(1,) + a.type.shape) if a.type.rank == 1 else a
    b2 = ctx.emit("reshape", [b], shape=b.type.shape + (1,)) if b.type.rank == 1 else b
    out = ctx.emit("matmul", [a2, b2])
    shape = out.type.shape
    if b.type.rank == 1:
        shape = shape[:-1]
    if a.type.rank == 1:
        shape = shape[:-2] + shape[-1:] if b.type.rank != 1 else shape[:-1]
    return ctx.emit("reshape", [out], shape=shape)


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {"Gemm": _gemm, "MatMul": _matmul}
