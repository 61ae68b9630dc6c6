"""ATen op -> IR converters, one small function per op family.

Each converter gets (ctx, fx_node, *args, **kwargs) with args as in the ATen schema and returns an IR
Value, a Python scalar / symbolic dim, a tuple of those, or a `Lazy` placeholder for values that are only
legal as an operand of a specific op (e.g. the `arange` offsets torch builds for a 2-D EmbeddingBag).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from recc.compiler.ir import Graph, Value
from recc.compiler.ir.types import Dim, dim_mul, is_float, numel


class ConversionError(ValueError):
    pass


@dataclass(frozen=True)
class Lazy:
    """A value we do not materialize: only the op that knows its meaning may consume it."""

    what: str
    args: tuple[Any, ...]


class Ctx:
    def __init__(self, graph: Graph, symbols: Any) -> None:
        self.graph = graph
        self.symbols = symbols
        self.env: dict[torch.fx.Node, Any] = {}
        self.origin = ""

    def value(self, arg: Any, user: Any = None) -> Value:
        v = self.env[arg] if isinstance(arg, torch.fx.Node) else arg
        if isinstance(v, Lazy):
            raise ConversionError(f"{v.what} is only supported as {v.args[-1]}")
        if not isinstance(v, Value):
            raise ConversionError(f"expected a tensor, got {type(v).__name__} {v!r}")
        return v

    def arg(self, a: Any) -> Any:
        """Resolve an argument: fx nodes to their converted values, lists elementwise."""
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def param(self, name: str, tensor: torch.Tensor) -> Value:
        array = tensor.detach().cpu()
        if array.dtype == torch.bfloat16:
            raise ConversionError("bfloat16 parameters are not supported yet")
        return self.graph.add_param(name.replace(".", "_"), array.numpy())

    def const(self, value: Any, dtype: str) -> Value:
        return self.graph.add_param("const", np.asarray(value, dtype=dtype))

    def emit(self, op: str, inputs: list[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, inputs, attrs, origin=self.origin).output

    def out_shape(self, node: torch.fx.Node) -> tuple[Dim, ...]:
        return self.symbols.shape(node.meta["val"])

    def out_dtype(self, node: torch.fx.Node) -> str:
        from recc.frontends.torch_export.capture import TORCH_TO_IR_DTYPE

        return TORCH_TO_IR_DTYPE[node.meta["val"].dtype]

    def as_dtype(self, v: Value, dtype: str) -> Value:
        return v if v.type.dtype == dtype else self.emit("cast", [v], dtype=dtype)

    def operand(self, a: Any, dtype: str) -> Value:
        """A tensor operand or a Python scalar, as a Value of `dtype`."""
        if isinstance(a, torch.fx.Node) and isinstance(self.env[a], Value):
            return self.as_dtype(self.env[a], dtype)
        if isinstance(a, (int, float, bool)):
            return self.const(a, dtype)
        raise ConversionError(f"unsupported operand {a!r}")


CONVERTERS: dict[str, Callable[..., Any]] = {}


def converts(*names: str):
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            CONVERTERS[name] = fn
        return fn
    return wrap


# -- elementwise -------------------------------------------------------------------------------------
def _binary(op: str, swap: bool = False):
    def convert(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any, alpha: Any = 1, **kw: Any) -> Value:
        dtype = ctx.out_dtype(node)
        compute = dtype
        if dtype == "bool":  # comparisons: compare in the promoted dtype of the operands
            ta = node.args[0].meta["val"].dtype if isinstance(a, torch.fx.Node) else None
            tb = node.args[1].meta["val"].dtype if isinstance(b, torch.fx.Node) else None
            from recc.frontends.torch_export.capture import TORCH_TO_IR_DTYPE

            ref = ta or tb
            other = tb if ta is not None else None
            compute = TORCH_TO_IR_DTYPE[torch.promote_types(ref, other) if other is not None else ref]
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
converts("logical_not.default", "bitwise_not.default")(_unary("logical_not"))


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
    """threshold(x, t, v) = x if x > t else v, spelled as where(x > t, x, v) (canonicalize-activations
    recognizes relu in it)."""
    xv = ctx.value(x)
    dtype = xv.type.dtype
    above = ctx.emit("gt", [xv, ctx.operand(threshold, dtype)])
    return ctx.emit("where", [above, xv, ctx.operand(value, dtype)])


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
    return ctx.emit(op, [ctx.value(x)], axis=dim % len(ctx.out_shape(node)))


# -- dense algebra -----------------------------------------------------------------------------------
@converts("linear.default")
def _linear(ctx: Ctx, node: torch.fx.Node, x: Any, w: Any, b: Any = None) -> Value:
    inputs = [ctx.value(x), ctx.value(w)] + ([ctx.value(b)] if b is not None else [])
    return ctx.emit("dense", inputs, activation="none")


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
def _matmul(ctx: Ctx, node: torch.fx.Node, a: Any, b: Any) -> Value:
    av, bv = ctx.value(a), ctx.value(b)
    if av.type.rank < 2 or bv.type.rank < 2:
        raise ConversionError("matmul with a 1-D operand is not supported; unsqueeze it first")
    return ctx.emit("matmul", [av, bv])


@converts("gru.input")
def _gru(ctx: Ctx, node: torch.fx.Node, x: Any, hx: Any, params: Any, has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> tuple[Value, Value]:
    """nn.GRU (eval, unidirectional, zero initial state): per layer, the input projection of all steps as
    one dense, then a `gru` op over the sequence. Returns (every step's output, final state per layer)."""
    from recc.compiler.ir import is_zero

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
    if dropout_p or is_causal or enable_gqa:
        raise ConversionError("scaled_dot_product_attention with dropout, is_causal or enable_gqa is not supported")
    qv, kv, vv = ctx.value(q), ctx.value(k), ctx.value(v)
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
    weights = ctx.emit("softmax", [scores], axis=scores.type.rank - 1)
    return ctx.emit("matmul", [weights, vv])


# -- shapes ------------------------------------------------------------------------------------------
@converts("reshape.default", "view.default", "_unsafe_view.default", "flatten.using_ints",
          "squeeze.dim", "squeeze.dims", "squeeze.default", "unsqueeze.default", "unflatten.int")
def _reshape(ctx: Ctx, node: torch.fx.Node, x: Any, *rest: Any) -> Value:
    xv = ctx.value(x)
    shape = list(ctx.out_shape(node))
    if shape == list(xv.type.shape):
        return xv
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(symbolic) == 1 and not isinstance(xv.type.shape[0], int) and symbolic[0] != 0:
        shape[symbolic[0]] = -1
    return ctx.emit("reshape", [xv], shape=tuple(shape))


@converts("permute.default")
def _permute(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any) -> Value:
    xv = ctx.value(x)
    return ctx.emit("permute", [xv], perm=tuple(d % xv.type.rank for d in dims))


@converts("t.default", "numpy_T.default")
def _t(ctx: Ctx, node: torch.fx.Node, x: Any) -> Value:
    xv = ctx.value(x)
    return xv if xv.type.rank < 2 else ctx.emit("permute", [xv], perm=(1, 0))


@converts("transpose.int")
def _transpose(ctx: Ctx, node: torch.fx.Node, x: Any, d0: int, d1: int) -> Value:
    xv = ctx.value(x)
    perm = list(range(xv.type.rank))
    perm[d0 % xv.type.rank], perm[d1 % xv.type.rank] = perm[d1 % xv.type.rank], perm[d0 % xv.type.rank]
    return ctx.emit("permute", [xv], perm=tuple(perm))


@converts("expand.default")
def _expand(ctx: Ctx, node: torch.fx.Node, x: Any, sizes: Any, *rest: Any) -> Value:
    xv = ctx.value(x)
    shape = ctx.out_shape(node)
    if len(shape) > xv.type.rank:
        xv = ctx.emit("reshape", [xv], shape=(1,) * (len(shape) - xv.type.rank) + xv.type.shape)
    return xv if xv.type.shape == shape else ctx.emit("expand", [xv], shape=shape)


@converts("cat.default", "concat.default")
def _cat(ctx: Ctx, node: torch.fx.Node, tensors: Any, dim: int = 0) -> Value:
    values = [ctx.value(t) for t in tensors]
    values = [v for v in values if 0 not in v.type.shape] or values[:1]
    return values[0] if len(values) == 1 else ctx.emit("concat", values, axis=dim % values[0].type.rank)


@converts("stack.default")
def _stack(ctx: Ctx, node: torch.fx.Node, tensors: Any, dim: int = 0) -> Value:
    values = [ctx.value(t) for t in tensors]
    axis = dim % (values[0].type.rank + 1)
    expanded = [ctx.emit("reshape", [v], shape=v.type.shape[:axis] + (1,) + v.type.shape[axis:]) for v in values]
    return expanded[0] if len(expanded) == 1 else ctx.emit("concat", expanded, axis=axis)


@converts("slice.Tensor")
def _slice(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    size = xv.type.shape[axis]
    start = 0 if start is None else ctx.arg(start)
    end = ctx.arg(end)
    if end is None or (isinstance(end, int) and isinstance(size, int) and end >= size) or \
            (isinstance(end, int) and end >= (1 << 62)) or end == size:
        end = None
    if start == 0 and end is None and step == 1:
        return xv
    if not isinstance(start, int) or (end is not None and not isinstance(end, int)):
        raise ConversionError("slice bounds must be static")
    return ctx.emit("slice", [xv], axis=axis, start=start, end=end, step=step)


@converts("select.int")
def _select(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: int) -> Value:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    if not isinstance(index, int):
        raise ConversionError("select with a symbolic index")
    size = xv.type.shape[axis]
    index = index % size if isinstance(size, int) else index
    sliced = ctx.emit("slice", [xv], axis=axis, start=index, end=index + 1, step=1)
    return ctx.emit("reshape", [sliced], shape=xv.type.shape[:axis] + xv.type.shape[axis + 1:])


@converts("index_select.default")
def _index_select(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int, index: Any) -> Value:
    xv = ctx.value(x)
    return ctx.emit("take", [xv, ctx.value(index)], axis=dim % xv.type.rank)


@converts("index.Tensor")
def _index(ctx: Ctx, node: torch.fx.Node, x: Any, indices: Any) -> Value:
    """x[:, i, j, ...] with index tensors on consecutive axes -> reshape + one take.

    The index tensors broadcast together (numpy advanced indexing); when they are parameters (constants)
    we fold them into one flat index over the merged axes, so `Z[:, li, lj]` becomes
    take(reshape(Z, [B, n*n]), li*n + lj) — a single gather with the right [B, len(li)] shape.
    """
    xv = ctx.value(x)
    axes = [i for i, ix in enumerate(indices) if ix is not None]
    if not axes:
        return xv
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise ConversionError("advanced indexing on non-consecutive axes")
    index_values = [ctx.value(indices[a]) for a in axes]
    if len(axes) == 1:
        return ctx.emit("take", [xv, index_values[0]], axis=axes[0])
    arrays = [ctx.graph.param_array(v) for v in index_values]
    if any(a is None for a in arrays):
        raise ConversionError("multi-axis indexing needs constant index tensors")
    dims = [xv.type.shape[a] for a in axes]
    if not all(isinstance(d, int) for d in dims):
        raise ConversionError("multi-axis indexing over symbolic dims")
    flat = np.zeros(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=np.int64)
    for array, d in zip(arrays, dims):
        flat = flat * d + np.where(array < 0, array + d, array)
    merged: Dim = int(np.prod(dims))
    shape = xv.type.shape[:axes[0]] + (merged,) + xv.type.shape[axes[-1] + 1:]
    reshaped = ctx.emit("reshape", [xv], shape=shape)
    return ctx.emit("take", [reshaped, ctx.graph.add_param("flat_index", flat)], axis=axes[0])


# -- reductions, casts, identities ---------------------------------------------------------------------
def _reduce(op: str):
    def convert(ctx: Ctx, node: torch.fx.Node, x: Any, dims: Any = None, keepdim: bool = False,
                *rest: Any, **kw: Any) -> Value:
        xv = ctx.value(x)
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


@converts("_assert_scalar.default", "sym_constrain_range_for_size.default", "sym_constrain_range.default",
          "_assert_async.msg")
def _ignore(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> None:
    return None


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


# -- embeddings ----------------------------------------------------------------------------------------
@converts("arange.start_step", "arange.default", "arange.start")
def _arange(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> Any:
    values = [ctx.arg(a) for a in args]
    start, end, step = (0, values[0], 1) if len(values) == 1 else (values + [1])[:3]
    if all(isinstance(v, int) for v in (start, end, step)):
        return ctx.const(np.arange(start, end, step), ctx.out_dtype(node))
    return Lazy("arange with a symbolic end", (start, end, step, "the offsets of a 2-D embedding_bag"))


@converts("embedding.default")
def _embedding(ctx: Ctx, node: torch.fx.Node, weight: Any, ids: Any, padding_idx: int = -1, *rest: Any) -> Value:
    return ctx.emit("embedding", [ctx.value(weight), ctx.value(ids)])


@converts("embedding_bag.padding_idx", "embedding_bag.default", "_embedding_bag.default")
def _embedding_bag(ctx: Ctx, node: torch.fx.Node, weight: Any, ids: Any, offsets: Any,
                   scale_grad_by_freq: bool = False, mode: int = 0, sparse: bool = False,
                   per_sample_weights: Any = None, include_last_offset: bool = False,
                   padding_idx: Any = None) -> tuple[Any, ...]:
    """aten's embedding_bag -> IR embedding_bag; recognises torch's rewrite of the 2-D input form
    (ids.reshape(-1) with offsets = arange(0, B*L, L)) and restores the fixed [B, L] layout."""
    if mode not in (0, 1):
        raise ConversionError("embedding_bag mode='max' is not supported")
    if padding_idx not in (None, -1):
        raise ConversionError("embedding_bag with padding_idx is not supported")
    table, mode_name = ctx.value(weight), ("sum", "mean")[mode]
    offsets_v = ctx.env[offsets]
    weights = [ctx.value(per_sample_weights)] if per_sample_weights is not None else []
    if isinstance(offsets_v, Lazy):
        start, _, step = offsets_v.args[:3]
        ids_node = ids
        flat = ctx.value(ids_node)
        producer = flat.producer
        if start != 0 or producer is None or producer.op != "reshape" or producer.inputs[0].type.rank != 2 \
                or producer.inputs[0].type.shape[1] != step or include_last_offset:
            raise ConversionError("offsets built by arange that do not describe fixed-size bags")
        ids2d = producer.inputs[0]
        if weights:
            w = weights[0]
            weights = [ctx.emit("reshape", [w], shape=ids2d.type.shape)]
        out = ctx.emit("embedding_bag", [table, ids2d] + weights, mode=mode_name, layout="fixed",
                       has_weights=bool(weights))
    else:
        out = ctx.emit("embedding_bag", [table, ctx.value(ids), ctx.value(offsets)] + weights, mode=mode_name,
                       layout="offsets", include_last_offset=bool(include_last_offset), has_weights=bool(weights))
    unused = Lazy("an embedding_bag auxiliary output", ("nothing (it is for training only)",))
    return (out, unused, unused, unused)


# -- splits and fresh tensors ----------------------------------------------------------------------------
def _pieces(ctx: Ctx, xv: Value, axis: int, sizes: list[int]) -> tuple[Value, ...]:
    out, start = [], 0
    for size in sizes:
        out.append(ctx.emit("slice", [xv], axis=axis, start=start, end=start + size, step=1))
        start += size
    return tuple(out)


def _static_dim(xv: Value, axis: int) -> int:
    size = xv.type.shape[axis]
    if not isinstance(size, int):
        raise ConversionError("splitting a symbolic dim is not supported")
    return size


@converts("split_with_sizes.default")
def _split_with_sizes(ctx: Ctx, node: torch.fx.Node, x: Any, sizes: Any, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    return _pieces(ctx, xv, dim % xv.type.rank, [int(s) for s in sizes])


@converts("split.Tensor")
def _split(ctx: Ctx, node: torch.fx.Node, x: Any, size: int, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    total = _static_dim(xv, axis)
    return _pieces(ctx, xv, axis, [min(size, total - s) for s in range(0, total, size)])


@converts("chunk.default")
def _chunk(ctx: Ctx, node: torch.fx.Node, x: Any, chunks: int, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    total = _static_dim(xv, axis)
    size = -(-total // chunks)
    return _pieces(ctx, xv, axis, [min(size, total - s) for s in range(0, total, size)])


@converts("unbind.int")
def _unbind(ctx: Ctx, node: torch.fx.Node, x: Any, dim: int = 0) -> tuple[Value, ...]:
    xv = ctx.value(x)
    axis = dim % xv.type.rank
    rest = xv.type.shape[:axis] + xv.type.shape[axis + 1:]
    return tuple(ctx.emit("reshape", [piece], shape=rest) for piece in _pieces(ctx, xv, axis, [1] * _static_dim(xv, axis)))


@converts("expand_as.default")
def _expand_as(ctx: Ctx, node: torch.fx.Node, x: Any, other: Any) -> Value:
    return _expand(ctx, node, x, None)


@converts("new_zeros.default", "new_ones.default", "new_full.default", "zeros_like.default", "ones_like.default",
          "full_like.default")
def _new_filled(ctx: Ctx, node: torch.fx.Node, x: Any, *args: Any, **kw: Any) -> Value:
    """A constant-filled tensor whose shape may hold the batch: a one-element constant broadcast to it."""
    name = node.target._schema.name.split("::")[-1]
    fill = 1 if "ones" in name else args[1] if name == "new_full" else args[0] if name == "full_like" else 0
    shape = ctx.out_shape(node)
    scalar = ctx.const(np.full((1,) * len(shape), fill), ctx.out_dtype(node))
    return ctx.emit("expand", [scalar], shape=shape) if any(d != 1 for d in shape) else scalar
