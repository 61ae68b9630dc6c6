"""Reductions, casts and identities, symbolic ints, fresh constants."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.compiler.ir.types import Dim, dim_mul, numel
from recc.frontends.torch_export.converters.context import (
    ConversionError,
    Ctx,
    converts,
)


def _reduce(op: str):
    def convert(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any = None, keepdim: bool = False,
                *rest: Any, **kw: Any) -> Value:
        xv = ctx.value(x)
        if op in ("sum", "mean"):  # accumulate in torch's result dtype (a sum of bools or int32s is int64)
            xv = ctx.as_dtype(xv, ctx.out_dtype(node))
        if xv.type.rank == 0:  # reducing a scalar over dim 0 / -1 / []: the scalar itself
            return ctx.as_dtype(xv, ctx.out_dtype(node))
        if isinstance(dims, int):
            dims = [dims]
        axes = tuple(range(xv.type.rank)) if dims in (None, []) else tuple(d % xv.type.rank for d in dims)
        out = ctx.emit(op, [xv], axes=axes, keepdims=bool(keepdim))
        return ctx.as_dtype(out, ctx.out_dtype(node))
    return convert


converts("sum.dim_IntList", "sum.default")(_reduce("sum"))
converts("mean.dim", "mean.default")(_reduce("mean"))
converts("amax.default")(_reduce("max"))
converts("amin.default")(_reduce("min"))


@converts("_to_copy.default", "to.dtype", "to.dtype_layout", "to.device", "type_as.default")
def _to(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any, **kw: Any) -> Value:
    return ctx.as_dtype(ctx.value(x), ctx.out_dtype(node))


@converts("clone.default", "contiguous.default", "alias.default", "detach.default", "dropout.default",
          "lift_fresh_copy.default", "_assert_tensor_metadata.default")
def _identity(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any, **kw: Any) -> Any:
    return ctx.env.get(x) if isinstance(x, torch.fx.Node) else None


@converts("copy.default")
def _copy(ctx: Ctx, node: torch.fx.Node, dst: Any, src: Any, non_blocking: bool = False) -> Value:
    """Functionalized `dst.copy_(src)`: src broadcast to dst's shape, in dst's dtype."""
    value = ctx.as_dtype(ctx.value(src), ctx.out_dtype(node))
    shape = ctx.out_shape(node)
    if value.type.shape == shape:
        return value
    if len(value.type.shape) < len(shape):
        value = ctx.emit("reshape", [value], shape=(1,) * (len(shape) - len(value.type.shape)) + value.type.shape)
    return ctx.emit("expand", [value], shape=shape)


@converts("native_dropout.default")
def _native_dropout(ctx: Ctx, node: torch.fx.Node, x: Any, p: float, train: Any = None) -> tuple[Value, Value]:
    """Dropout at inference (train False): x itself, and an all-true mask."""
    if train:
        raise ConversionError("dropout in training mode is random")
    xv = ctx.value(x)
    mask = ctx.const(np.ones((1,) * xv.type.rank, bool), "bool")
    return xv, ctx.emit("expand", [mask], shape=xv.type.shape) if mask.type.shape != xv.type.shape else mask


@converts("_assert_scalar.default", "sym_constrain_range_for_size.default", "sym_constrain_range.default",
          "_assert_async.msg")
def _ignore(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> None:
    return None


@converts("empty.memory_format", "empty_strided.default", "empty_like.default", "new_empty.default")
def _empty(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> Value:
    """Uninitialized memory (torch.empty): zeros, which any later write overwrites as torch's would."""
    shape, dtype = ctx.out_shape(node), ctx.out_dtype(node)
    zero = ctx.const(np.zeros((1,) * len(shape)), dtype)
    return zero if zero.type.shape == shape else ctx.emit("expand", [zero], shape=shape)


@converts("scalar_tensor.default", "full.default", "zeros.default", "ones.default", "tensor.default")
def _constant(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> Value:
    val = node.meta["val"]
    shape = ctx.out_shape(node)
    name = node.target._schema.name.split("::")[-1]
    fill = {"zeros": 0, "ones": 1}.get(name, args[-1] if name == "full" else args[0] if args else 0)
    if name == "full":
        fill = args[1]
    if not all(isinstance(d, int) for d in shape):
        if name not in ("zeros", "ones", "full"):
            raise ConversionError("tensor creation with a symbolic shape")
        return ctx.emit("expand", [ctx.const(np.full((1,) * len(shape), fill), ctx.out_dtype(node))], shape=shape)
    if val is None:
        return ctx.const(fill, "float32")
    constant = ctx.const(np.full(shape, fill), ctx.out_dtype(node))
    # Graph.add_param stores a 0-d array as [1]; a reshape restores the 0-d type torch gave it.
    return constant if constant.type.shape == shape else ctx.emit("reshape", [constant], shape=shape)


# -- symbolic ints -----------------------------------------------------------------------------------------
@converts("sym_size.int")
def _sym_size(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int) -> Dim:
    return ctx.value(x).type.shape[dim]


@converts("sym_numel.default")
def _sym_numel(ctx: Ctx, node: torch.fx.Node, x: Any) -> Dim:
    return numel(ctx.value(x).type.shape)


@converts("mul", "floordiv", "add", "sub")
def _int_arith(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any) -> Any:
    a, b = ctx.arg(a), ctx.arg(b)
    name = node.target.__name__
    if name == "mul":
        return dim_mul(a, b)
    if isinstance(a, int) and isinstance(b, int):
        return {"floordiv": operator.floordiv, "add": operator.add, "sub": operator.sub}[name](a, b)
    return ctx.symbols.dim(node.meta["val"])


@converts("getitem")
def _getitem(ctx: Ctx, node: torch.fx.Node, x: Any, index: int) -> Any:
    items = ctx.arg(x)
    if not isinstance(items, (tuple, list)):
        raise ConversionError(f"getitem on {type(items).__name__}")
    return items[index]
