"""The IR's operator set: for each op, its type rule. Numeric semantics live in compiler/interpreter.py.

Every op's output types follow from its input types and attributes alone, so a graph can be verified
without running it. Attributes are plain Python values (ints, floats, strings, tuples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from recc.compiler.ir.types import Dim, Sym, TensorType, dim_div, is_float, is_int, numel

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "leaky_relu")


class IRTypeError(ValueError):
    """An op applied to inputs whose types it does not accept."""


def _fail(op: str, msg: str) -> IRTypeError:
    return IRTypeError(f"{op}: {msg}")


def broadcast_shapes(op: str, a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    out: list[Dim] = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise _fail(op, f"shapes {tuple(map(str, a))} and {tuple(map(str, b))} do not broadcast")
    return tuple(reversed(out))


def _axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _fail(op, f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


@dataclass(frozen=True)
class OpDef:
    name: str
    infer: Callable[[list[TensorType], dict[str, Any]], list[TensorType]]
    arity: tuple[int, int]  # min, max inputs
    summary: str


OPS: dict[str, OpDef] = {}


def _register(name: str, arity: tuple[int, int], summary: str):
    def wrap(fn: Callable[[list[TensorType], dict[str, Any]], list[TensorType]]):
        OPS[name] = OpDef(name, fn, arity, summary)
        return fn
    return wrap


UNARY = ("relu", "sigmoid", "tanh", "exp", "log", "neg", "sqrt", "rsqrt", "abs", "erf", "gelu", "silu",
         "leaky_relu", "clamp", "reciprocal", "logical_not",
         # math (interpreter_math.py, lowering/math.py)
         "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "floor", "ceil",
         "round", "trunc", "sign", "log1p", "expm1", "log2", "log10", "bitwise_not", "erfinv")
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow",
          "remainder", "fmod", "floor_divide", "trunc_divide", "atan2", "bitwise_and", "bitwise_or", "bitwise_xor",
          "left_shift", "right_shift", "logical_and", "logical_or", "logical_xor")
COMPARE = ("gt", "ge", "lt", "le", "eq", "ne")
PREDICATES = ("isnan", "isinf", "isfinite")  # elementwise, bool out


def _unary(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [ts[0]]


for _name in UNARY:
    OPS[_name] = OpDef(_name, _unary, (1, 1), f"elementwise {_name}")
for _name in PREDICATES:
    OPS[_name] = OpDef(_name, lambda ts, attrs: [TensorType(ts[0].shape, "bool")], (1, 1), f"elementwise {_name}")


def _binary_for(name: str, out_dtype: str | None):
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        a, b = ts
        if a.dtype != b.dtype:
            raise _fail(name, f"dtypes differ: {a.dtype} vs {b.dtype}")
        return [TensorType(broadcast_shapes(name, a.shape, b.shape), out_dtype or a.dtype)]
    return infer


for _name in BINARY:
    OPS[_name] = OpDef(_name, _binary_for(_name, None), (2, 2), f"elementwise {_name} with broadcasting")
for _name in COMPARE:
    OPS[_name] = OpDef(_name, _binary_for(_name, "bool"), (2, 2), f"elementwise comparison {_name}")


@_register("where", (3, 3), "where(cond, a, b) with broadcasting")
def _where(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    c, a, b = ts
    if c.dtype != "bool" or a.dtype != b.dtype:
        raise _fail("where", f"expects (bool, T, T), got ({c.dtype}, {a.dtype}, {b.dtype})")
    return [TensorType(broadcast_shapes("where", broadcast_shapes("where", c.shape, a.shape), b.shape), a.dtype)]


@_register("dense", (2, 3), "act(x @ w.T + b): x [..., K], w [N, K], b [N]; one fused kernel")
def _dense(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    if attrs.get("activation", "none") not in ACTIVATIONS:
        raise _fail("dense", f"unknown activation {attrs.get('activation')!r}")
    if attrs.get("precision", "fp32") not in ("fp32", "bf16", "int8"):
        raise _fail("dense", f"unknown precision {attrs.get('precision')!r}")
    if "act_scale" in attrs and not (attrs["act_scale"] > 0 and 0 <= attrs.get("act_zero_point", -1) <= 255):
        raise _fail("dense", f"calibrated activation scale {attrs['act_scale']!r} must be > 0 and zero point "
                             f"{attrs.get('act_zero_point')!r} in [0, 255]")
    if x.rank < 2 or w.rank != 2 or not is_float(x.dtype) or x.dtype != w.dtype:
        raise _fail("dense", f"expects x [..., K] and w [N, K] of one float dtype, got {x} and {w}")
    if x.shape[-1] != w.shape[1]:
        raise _fail("dense", f"inner dims differ: x {x} vs w {w}")
    if len(ts) == 3 and (ts[2].shape != (w.shape[0],) or ts[2].dtype != x.dtype):
        raise _fail("dense", f"bias must be [{w.shape[0]}] {x.dtype}, got {ts[2]}")
    return [TensorType(x.shape[:-1] + (w.shape[0],), x.dtype)]


@_register("matmul", (2, 2), "batched matrix product with numpy broadcasting (rank >= 2)")
def _matmul(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    a, b = ts
    if a.rank < 2 or b.rank < 2 or a.dtype != b.dtype:
        raise _fail("matmul", f"expects two rank>=2 tensors of one dtype, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise _fail("matmul", f"inner dims differ: {a} @ {b}")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return [TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)]


@_register("softmax", (1, 1), "softmax along `axis`")
def _softmax(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _axis("softmax", attrs["axis"], ts[0].rank)
    return [ts[0]]


OPS["log_softmax"] = OpDef("log_softmax", _softmax, (1, 1), "log-softmax along `axis`")


@_register("concat", (1, 1 << 16), "concatenate along `axis`")
def _concat(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    rank = ts[0].rank
    axis = _axis("concat", attrs["axis"], rank)
    total: Dim = 0
    for t in ts:
        if t.rank != rank or t.dtype != ts[0].dtype:
            raise _fail("concat", f"inputs differ in rank or dtype: {ts[0]} vs {t}")
        if any(t.shape[i] != ts[0].shape[i] for i in range(rank) if i != axis):
            raise _fail("concat", f"non-axis dims differ: {ts[0]} vs {t}")
        d = t.shape[axis]
        if isinstance(total, int) and isinstance(d, int):
            total += d
        elif total == 0:
            total = d
        else:
            raise _fail("concat", "concatenating symbolic dims is not supported")
    shape = list(ts[0].shape)
    shape[axis] = total
    return [TensorType(tuple(shape), ts[0].dtype)]


@_register("reshape", (1, 1), "reshape to `shape` (ints, symbolic dims, at most one -1)")
def _reshape(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    shape = list(attrs["shape"])
    if sum(1 for d in shape if d == -1) > 1:
        raise _fail("reshape", "at most one -1")
    known = numel(tuple(d for d in shape if d != -1))
    total = numel(x.shape)
    if -1 in shape:
        missing = dim_div(total, known)
        if missing is None:
            raise _fail("reshape", f"cannot reshape {x} to {shape}")
        shape[shape.index(-1)] = missing
    elif known != total:
        raise _fail("reshape", f"cannot reshape {x} ({total} elements) to {shape} ({known})")
    return [TensorType(tuple(shape), x.dtype)]


@_register("permute", (1, 1), "transpose axes by `perm`")
def _permute(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, perm = ts[0], tuple(attrs["perm"])
    if sorted(perm) != list(range(x.rank)):
        raise _fail("permute", f"perm {perm} is not a permutation of rank {x.rank}")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


@_register("slice", (1, 1), "x[start:end:step] along `axis` (static bounds)")
def _slice(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    axis = _axis("slice", attrs["axis"], x.rank)
    d = x.shape[axis]
    start, end, step = attrs["start"], attrs["end"], attrs.get("step", 1)
    if not isinstance(d, int):
        if (start, end, step) != (0, None, 1):
            raise _fail("slice", "slicing a symbolic dim is not supported")
        return [x]
    n = len(range(*slice(start, end, step).indices(d)))
    shape = list(x.shape)
    shape[axis] = n
    return [TensorType(tuple(shape), x.dtype)]


@_register("take", (2, 2), "gather along `axis` with an integer index tensor (numpy.take)")
def _take(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, idx = ts
    axis = _axis("take", attrs["axis"], x.rank)
    if not is_int(idx.dtype):
        raise _fail("take", f"indices must be integers, got {idx.dtype}")
    return [TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)]


@_register("gather", (2, 2), "out[..i..] = x[..index[..i..] along `axis`..] (torch.gather); shape of index")
def _gather(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, idx = ts
    axis = _axis("gather", attrs["axis"], x.rank)
    if not is_int(idx.dtype) or idx.rank != x.rank:
        raise _fail("gather", f"indices must be integers of the data's rank, got {idx} for {x}")
    for d, (n, m) in enumerate(zip(x.shape, idx.shape)):
        if d != axis and isinstance(n, int) and isinstance(m, int) and m > n:
            raise _fail("gather", f"index dim {d} is {m}, larger than the data's {n}")
    return [TensorType(idx.shape, x.dtype)]


@_register("scatter", (3, 3), "x with x[..index[..i..] along `axis`..] = (or `reduce`d with) src[..i..] "
          "(torch.scatter / scatter_reduce; index and src of one shape); reduce none|sum|prod|amax|amin")
def _scatter(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, idx, src = ts
    _axis("scatter", attrs["axis"], x.rank)
    if not is_int(idx.dtype) or idx.rank != x.rank or src.shape != idx.shape or src.dtype != x.dtype:
        raise _fail("scatter", f"expects integer indices of the data's rank and src of their shape, got {x}, "
                               f"{idx}, {src}")
    if attrs.get("reduce", "none") not in ("none", "sum", "prod", "amax", "amin"):
        raise _fail("scatter", f"unknown reduce {attrs.get('reduce')!r}")
    return [x]


@_register("expand", (1, 1), "broadcast to `shape`")
def _expand(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape = tuple(attrs["shape"])
    if broadcast_shapes("expand", ts[0].shape, shape) != shape:
        raise _fail("expand", f"cannot expand {ts[0]} to {shape}")
    return [TensorType(shape, ts[0].dtype)]


def _reduce(name: str):
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        axes = sorted(_axis(name, a, x.rank) for a in attrs["axes"])
        keep = attrs.get("keepdims", False)
        shape = tuple((1 if i in axes else d) for i, d in enumerate(x.shape) if keep or i not in axes)
        return [TensorType(shape, x.dtype)]
    return infer


for _name in ("sum", "mean", "max", "min", "prod"):
    OPS[_name] = OpDef(_name, _reduce(_name), (1, 1), f"reduce-{_name} over `axes`")
for _name, _dtype in (("argmax", "int64"), ("argmin", "int64"), ("any", "bool"), ("all", "bool")):
    OPS[_name] = OpDef(_name, lambda ts, attrs, _n=_name, _d=_dtype: [
        TensorType(_reduce(_n)(ts, attrs)[0].shape, _d)], (1, 1),
        f"{_name} over `axes` ({_dtype}; arg* take one axis, NaN counts as the largest value)")


@_register("cumsum", (1, 1), "running sum along `axis`")
def _cumsum(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _axis("cumsum", attrs["axis"], ts[0].rank)
    return [ts[0]]


OPS["cumprod"] = OpDef("cumprod", _cumsum, (1, 1), "running product along `axis`")


@_register("flip", (1, 1), "reverse the order along each of `axes`")
def _flip(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    for a in attrs["axes"]:
        _axis("flip", a, ts[0].rank)
    return [ts[0]]


@_register("pad", (1, 1), "constant padding: `pads` [(before, after) per axis], `value`")
def _pad(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, pads = ts[0], list(attrs["pads"])
    if len(pads) != x.rank:
        raise _fail("pad", f"pads {pads} do not give one (before, after) per axis of {x}")
    shape = []
    for d, (lo, hi) in zip(x.shape, pads):
        if (lo or hi) and not isinstance(d, int):
            raise _fail("pad", "padding a symbolic dim is not supported")
        if isinstance(d, int) and d + lo + hi < 0:
            raise _fail("pad", f"pads {pads} remove more than {x} has")
        shape.append(d + lo + hi if isinstance(d, int) else d)
    return [TensorType(tuple(shape), x.dtype)]


@_register("cast", (1, 1), "convert to `dtype`")
def _cast(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [TensorType(ts[0].shape, attrs["dtype"])]


@_register("embedding", (2, 2), "table[ids]: rows of a table, shape ids.shape + [dim]")
def _embedding(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    table, ids = ts
    if table.rank != 2 or not is_int(ids.dtype):
        raise _fail("embedding", f"expects table [rows, dim] and integer ids, got {table} and {ids}")
    return [TensorType(ids.shape + (table.shape[1],), table.dtype)]


@_register("embedding_bag", (2, 4),
           "pooled lookup: layout=fixed ids [B, L] | layout=offsets ids [nnz] + offsets; mode sum|mean; "
           "optional per-sample weights")
def _embedding_bag(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    table, ids = ts[0], ts[1]
    layout, mode = attrs["layout"], attrs["mode"]
    if mode not in ("sum", "mean") or layout not in ("fixed", "offsets"):
        raise _fail("embedding_bag", f"unsupported mode/layout {mode}/{layout}")
    if table.rank != 2 or not is_int(ids.dtype):
        raise _fail("embedding_bag", f"expects table [rows, dim] and integer ids, got {table} and {ids}")
    expected = 2 + (layout == "offsets") + bool(attrs.get("has_weights", False))
    if len(ts) != expected:
        raise _fail("embedding_bag", f"expects {expected} inputs for layout={layout}, got {len(ts)}")
    if layout == "fixed":
        if ids.rank != 2:
            raise _fail("embedding_bag", f"fixed layout wants ids [B, L], got {ids}")
        bags: Dim = ids.shape[0]
    else:
        offsets = ts[2]
        if ids.rank != 1 or offsets.rank != 1 or not is_int(offsets.dtype):
            raise _fail("embedding_bag", f"offsets layout wants ids [nnz] and offsets [B], got {ids}, {offsets}")
        bags = offsets.shape[0]
        if attrs.get("include_last_offset", False):
            if not isinstance(bags, int):
                raise _fail("embedding_bag", "include_last_offset with a symbolic offsets length")
            bags -= 1
    if attrs.get("has_weights", False) and (ts[-1].shape != ids.shape or ts[-1].dtype != table.dtype):
        raise _fail("embedding_bag", f"per_sample_weights must match ids {ids}, got {ts[-1]}")
    return [TensorType((bags, table.shape[1]), table.dtype)]


def infer_types(op: str, types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    opdef = OPS.get(op)
    if opdef is None:
        raise IRTypeError(f"unknown op {op!r}")
    lo, hi = opdef.arity
    if not lo <= len(types) <= hi:
        raise _fail(op, f"takes {lo}..{hi} inputs, got {len(types)}")
    return opdef.infer(types, attrs)


from recc.compiler.ir import ops_nn  # noqa: E402,F401  (registers conv and pool)
from recc.compiler.ir import ops_sort  # noqa: E402,F401  (registers sort and argsort)

__all__ = ["OPS", "OpDef", "IRTypeError", "infer_types", "broadcast_shapes", "ACTIVATIONS", "Sym"]
