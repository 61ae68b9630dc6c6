"""The IR's math ops as Relax, with eager PyTorch's semantics where TVM's defaults differ.

- sign(NaN) = 0; argmax / argmin pick the first NaN of a row (TVM compares with >, skipping NaN);
- fmod is C's fmod (TVM's truncated mod on floats), remainder takes the divisor's sign, and float floor
  division follows ATen's div_floor (fmod-based, so 1 // 0.1 = 9 as in torch, not floor(10.000001));
- integer division by zero would trap (SIGFPE) in compiled code: the divisor is made nonzero first and the
  result at those positions is unspecified (eager torch raises; the reference interpreter raises);
- shifts by the type width or more give 0 (left) or the sign (right), as torch, instead of LLVM poison;
- log1p / expm1 (no Relax op) use Kahan's forms, accurate near 0; erfinv is Giles' single-precision
  approximation refined by two Newton steps.
"""

from __future__ import annotations

import math as pymath
from typing import Any, Callable

from tvm import relax

import numpy as np

from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.interpreter_math import pool_divisor, pool_padding
from recc.compiler.ir import Node
from recc.compiler.ir.types import is_float

op = relax.op


def _c(value: float, like: relax.Expr | str) -> relax.Expr:
    """A scalar constant of `like`'s dtype (`like` a dtype, or an expression that has one)."""
    return relax.const(value, like if isinstance(like, str) else like.ty.dtype)


def _log1p(x: relax.Expr) -> relax.Expr:
    u = op.add(x, _c(1.0, x))
    kahan = op.divide(op.multiply(op.log(u), x), op.subtract(u, _c(1.0, x)))
    return op.where(op.equal(x, _c(pymath.inf, x)), x, op.where(op.equal(u, _c(1.0, x)), x, kahan))


def _expm1(x: relax.Expr) -> relax.Expr:
    u = op.exp(x)
    um1 = op.subtract(u, _c(1.0, x))
    kahan = op.divide(op.multiply(um1, x), op.log(u))
    out = op.where(op.equal(u, _c(1.0, x)), x, op.where(op.equal(um1, _c(-1.0, x)), um1, kahan))
    return op.where(op.isinf(u), u, out)  # exp overflowed (or x = inf): expm1 is inf too


def _poly(w: relax.Expr, coefs: tuple[float, ...], dt: str) -> relax.Expr:
    p = _c(coefs[0], dt)
    for c in coefs[1:]:
        p = op.add(op.multiply(p, w), _c(c, dt))
    return p


def _erfinv(x: relax.Expr) -> relax.Expr:
    dt = str(x.ty.dtype)
    one = _c(1.0, dt)
    w = op.negative(op.log(op.multiply(op.subtract(one, x), op.add(one, x))))
    central = _poly(op.subtract(w, _c(2.5, dt)), (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                                                 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727,
                                                 1.50140941), dt)
    tail = _poly(op.subtract(op.sqrt(w), _c(3.0, dt)), (-0.000200214257, 0.000100950558, 0.00134934322,
                                                       -0.00367342844, 0.00573950773, -0.0076224613,
                                                       0.00943887047, 1.00167406, 2.83297682), dt)
    y = op.multiply(op.where(op.less(w, _c(5.0, dt)), central, tail), x)
    for _ in range(2):  # Newton on erf(y) = x
        step = op.divide(op.subtract(op.erf(y), x),
                         op.multiply(_c(2 / pymath.sqrt(pymath.pi), dt), op.exp(op.negative(op.multiply(y, y)))))
        y = op.subtract(y, step)
    edge = op.where(op.equal(op.abs(x), one), op.multiply(x, _c(pymath.inf, dt)), _c(pymath.nan, dt))
    return op.where(op.less(op.abs(x), one), y, edge)


def _sign(x: relax.Expr) -> relax.Expr:
    positive = op.astype(op.greater(x, _c(0, x)), x.ty.dtype)
    negative = op.astype(op.less(x, _c(0, x)), x.ty.dtype)
    return op.subtract(positive, negative)  # 0 for NaN, as torch


FLOAT_UNARY: dict[str, Callable[[relax.Expr], relax.Expr]] = {
    "sin": op.sin, "cos": op.cos, "tan": op.tan, "asin": op.asin, "acos": op.acos, "atan": op.atan,
    "sinh": op.sinh, "cosh": op.cosh, "asinh": op.asinh, "acosh": op.acosh, "atanh": op.atanh,
    "floor": op.floor, "ceil": op.ceil, "round": op.round, "trunc": op.trunc,
    "log1p": _log1p, "expm1": _expm1, "erfinv": _erfinv,
    "log2": lambda x: op.multiply(op.log(x), _c(1 / pymath.log(2), x)),
    "log10": lambda x: op.multiply(op.log(x), _c(1 / pymath.log(10), x)),
}
ROUNDING = ("floor", "ceil", "round", "trunc")  # identities on integers


def _unary(lw: LoweringContext, node: Node, x: relax.Expr) -> relax.Expr:
    name, dtype = node.op, node.inputs[0].type.dtype
    if name == "sign":
        return _sign(x)
    if name == "bitwise_not":
        return op.logical_not(x) if dtype == "bool" else op.bitwise_not(x)
    if name in ("isnan", "isinf", "isfinite"):
        if not is_float(dtype):
            return op.ones_like(x, "bool") if name == "isfinite" else op.zeros_like(x, "bool")
        return {"isnan": op.isnan, "isinf": op.isinf, "isfinite": op.isfinite}[name](x)
    if name in ROUNDING and not is_float(dtype):
        return x
    return FLOAT_UNARY[name](x)


def _nonzero(b: relax.Expr) -> relax.Expr:
    return op.where(op.equal(b, _c(0, b)), _c(1, b), b)


def _float_floor_divide(a: relax.Expr, b: relax.Expr) -> relax.Expr:
    """ATen's div_floor for floats."""
    mod = op.mod(a, b)
    div = op.divide(op.subtract(a, mod), b)
    fix = op.logical_and(op.not_equal(mod, _c(0, a)), op.logical_xor(op.less(b, _c(0, b)), op.less(mod, _c(0, a))))
    div = op.where(fix, op.subtract(div, _c(1, a)), div)
    floor = op.floor(div)
    floor = op.where(op.greater(op.subtract(div, floor), _c(0.5, a)), op.add(floor, _c(1, a)), floor)
    zero_sign = op.multiply(op.abs(floor), op.sign(op.divide(a, b)))  # +-0 as a / b has it
    result = op.where(op.equal(div, _c(0, a)), zero_sign, floor)
    return op.where(op.equal(b, _c(0, b)), op.divide(a, b), result)


def _divide(name: str, a: relax.Expr, b: relax.Expr, floating: bool) -> relax.Expr:
    if floating:
        if name == "fmod":
            return op.mod(a, b)
        if name == "remainder":
            mod = op.mod(a, b)
            fix = op.logical_and(op.not_equal(mod, _c(0, a)),
                                 op.logical_xor(op.less(b, _c(0, b)), op.less(mod, _c(0, a))))
            return op.where(fix, op.add(mod, b), mod)
        if name == "floor_divide":
            return _float_floor_divide(a, b)
        return op.trunc(op.divide(a, b))
    b = _nonzero(b)
    if name == "fmod":
        return op.mod(a, b)
    if name == "remainder":
        return op.floor_mod(a, b)
    q = op.floor_divide(a, b)
    if name == "floor_divide":
        return q
    inexact = op.not_equal(op.multiply(q, b), a)
    return op.where(op.logical_and(op.less(q, _c(0, a)), inexact), op.add(q, _c(1, a)), q)


def _shift(name: str, a: relax.Expr, b: relax.Expr, bits: int) -> relax.Expr:
    out_of_range = op.logical_or(op.less(b, _c(0, b)), op.greater_equal(b, _c(bits, b)))
    safe = op.where(out_of_range, _c(0, b), b)
    if name == "left_shift":
        return op.where(out_of_range, _c(0, a), op.left_shift(a, safe))
    sign_fill = op.where(op.less(a, _c(0, a)), _c(-1, a), _c(0, a))
    return op.where(out_of_range, sign_fill, op.right_shift(a, safe))


def _binary(lw: LoweringContext, node: Node, a: relax.Expr, b: relax.Expr) -> relax.Expr:
    name, dtype = node.op, node.inputs[0].type.dtype
    if name in ("remainder", "fmod", "floor_divide", "trunc_divide"):
        return _divide(name, a, b, is_float(dtype))
    if name in ("left_shift", "right_shift"):
        return _shift(name, a, b, int("".join(c for c in dtype if c.isdigit()) or 8))
    if name == "atan2":
        return op.atan2(a, b)
    if name.startswith("bitwise_") and dtype == "bool":
        name = name.replace("bitwise_", "logical_")
    return getattr(op, name)(a, b)


def int_power(a: relax.Expr, e: relax.Expr, bits: int) -> relax.Expr:
    """a ** e for integers by squaring (TVM's power takes floats only); for e < 0 the truncated value
    (1 for a = 1, +-1 for a = -1, else 0) where eager torch raises."""
    result, base, rest = _c(1, a), a, e
    for _ in range(bits - 1):
        odd = op.equal(op.bitwise_and(rest, _c(1, e)), _c(1, e))
        result = op.where(odd, op.multiply(result, base), result)
        base = op.multiply(base, base)
        rest = op.right_shift(rest, _c(1, e))
    negative = op.where(op.equal(a, _c(1, a)), _c(1, a), op.where(
        op.equal(a, _c(-1, a)), op.where(op.equal(op.bitwise_and(e, _c(1, e)), _c(1, e)), _c(-1, a), _c(1, a)),
        _c(0, a)))
    return op.where(op.less(e, _c(0, e)), negative, result)


def _arg(name: str, x: relax.Expr, axis: int, keepdims: bool, floating: bool) -> relax.Expr:
    reduce = op.argmax if name == "argmax" else op.argmin
    # TVM's reducer starts from (dtype's extreme, index -1) and takes only strictly better values, so a row
    # made entirely of that extreme (argmin of [INT64_MAX], argmax of [-inf, -inf]) came out -1: it is 0
    plain = op.maximum(reduce(x, axis=axis, keepdims=keepdims), relax.const(0, "int64"))
    if not floating:
        return plain
    nans = op.isnan(x)
    first_nan = op.argmax(op.astype(nans, "int8"), axis=axis, keepdims=keepdims)
    has_nan = op.greater(op.sum(op.astype(nans, "int32"), axis=[axis], keepdims=keepdims), relax.const(0, "int32"))
    return op.where(has_nan, first_nan, plain)


def _reduce(lw: LoweringContext, node: Node, x: relax.Expr) -> relax.Expr:
    a, name = node.attrs, node.op
    axes, keep = list(a["axes"]), bool(a.get("keepdims", False))
    if name == "prod":
        return op.prod(x, axis=axes, keepdims=keep)
    if name in ("argmax", "argmin"):
        return _arg(name, x, axes[0], keep, is_float(node.inputs[0].type.dtype))
    dtype = node.inputs[0].type.dtype
    truth = op.astype(x if dtype == "bool" else op.not_equal(x, _c(0, x)), "int32")
    if name == "any":
        return op.greater(op.sum(truth, axis=axes, keepdims=keep), relax.const(0, "int32"))
    return op.greater(op.min(truth, axis=axes, keepdims=keep), relax.const(0, "int32"))


def _pad(lw: LoweringContext, node: Node, x: relax.Expr) -> relax.Expr:
    return pad_or_crop(lw, x, node.inputs[0].type.shape, [tuple(p) for p in node.attrs["pads"]],
                       float(node.attrs["value"]))


def pad_or_crop(lw: LoweringContext, x: relax.Expr, shape: Any, pads: list[tuple[int, int]],
                value: float) -> relax.Expr:
    """x padded with `value` by (before, after) per axis, a negative amount cropping instead."""
    crops = [(axis, max(0, -lo), d - max(0, -hi)) for axis, (d, (lo, hi)) in enumerate(zip(shape, pads))
             if lo < 0 or hi < 0]
    if crops:
        x = lw.emit(op.strided_slice(x, [c[0] for c in crops], [c[1] for c in crops], [c[2] for c in crops]))
    width = [max(0, v) for p in pads for v in p]
    if not any(width):
        return x
    return op.nn.pad(x, width, "constant", value)


def _conv(node: Node, args: list[relax.Expr]) -> relax.Expr:
    a = node.attrs
    nd = node.inputs[0].type.rank - 2
    fn = {1: op.nn.conv1d, 2: op.nn.conv2d, 3: op.nn.conv3d}.get(nd)
    if fn is None:
        raise NotImplementedError(f"codegen: conv over {nd} spatial dims")
    layout = "NC" + "DHW"[3 - nd:]
    out = fn(args[0], args[1], strides=tuple(a["stride"]), padding=tuple(a["padding"]) * 2,
             dilation=tuple(a["dilation"]), groups=a["groups"], data_layout=layout,
             kernel_layout="OI" + "DHW"[3 - nd:])
    if len(args) == 3:
        out = op.add(out, op.reshape(args[2], (-1,) + (1,) * nd))
    return out


def _pool(lw: LoweringContext, node: Node, x: relax.Expr) -> relax.Expr:
    """Explicit padding (torch's, plus ceil_mode's room) then windows with no padding of TVM's own: max
    through TVM's max pool (a NaN in the window restored: TVM's max skips it; -inf restored for a window of
    only -inf: TVM's max starts from the lowest finite value), avg as a sum (a grouped conv
    with ones) divided by torch's divisor per output position, computed here from the static shape."""
    a, shape = node.attrs, node.inputs[0].type.shape
    nd, dtype = len(a["kernel"]), node.inputs[0].type.dtype
    pads = pool_padding(shape[2:], a)
    width = [0, 0, 0, 0] + [v for p in pads for v in p]
    if a["kind"] == "max":
        low = float("-inf") if is_float(dtype) else float(np.iinfo(dtype).min)
        padded = lw.emit(op.nn.pad(x, width, "constant", low))
        fn = {1: op.nn.max_pool1d, 2: op.nn.max_pool2d, 3: op.nn.max_pool3d}[nd]
        layout = "NC" + "DHW"[3 - nd:]
        out = fn(padded, tuple(a["kernel"]), tuple(a["stride"]), (0,) * (2 * nd), tuple(a["dilation"]),
                 layout=layout)
        if not is_float(dtype):
            return out
        nans, above = (lw.emit(fn(op.astype(flag, dtype), tuple(a["kernel"]), tuple(a["stride"]), (0,) * (2 * nd),
                                  tuple(a["dilation"]), layout=layout))
                       for flag in (op.isnan(padded), op.greater(padded, _c(-pymath.inf, dtype))))
        out = op.where(op.greater(above, _c(0, dtype)), out, _c(-pymath.inf, dtype))  # TVM's max starts at -FLT_MAX
        return op.where(op.greater(nans, _c(0, dtype)), _c(pymath.nan, dtype), lw.emit(out))
    padded = lw.emit(op.nn.pad(x, width, "constant", 0.0))
    channels = shape[1]
    ones = relax.const(np.ones((channels, 1, *a["kernel"]), dtype), dtype)
    fn = {1: op.nn.conv1d, 2: op.nn.conv2d, 3: op.nn.conv3d}[nd]
    total = lw.emit(fn(padded, ones, strides=tuple(a["stride"]), padding=(0,) * (2 * nd),
                       dilation=tuple(a["dilation"]), groups=channels, data_layout="NC" + "DHW"[3 - nd:], kernel_layout="OI" + "DHW"[3 - nd:]))
    divisor = pool_divisor(tuple(shape[2:]), a).astype(dtype if is_float(dtype) else "float64")
    if is_float(dtype):
        return op.divide(total, relax.const(divisor[None, None], dtype))
    quotient = op.divide(op.astype(total, "float64"), relax.const(divisor[None, None], "float64"))
    return op.astype(op.trunc(quotient), dtype)


def lower_math(lw: LoweringContext, node: Node) -> relax.Expr:
    args, a = lw.args(node), node.attrs
    if node.op == "pool":
        return lw.emit(_pool(lw, node, args[0]))
    if node.op == "conv":
        return lw.emit(_conv(node, args))
    if node.op in REDUCTIONS:
        return lw.emit(_reduce(lw, node, args[0]))
    if node.op in ("cumsum", "cumprod"):
        fn = op.cumsum if node.op == "cumsum" else op.cumprod
        return lw.emit(fn(args[0], axis=a["axis"], dtype=node.output.type.dtype))
    if node.op == "flip":
        out = args[0]
        for axis in a["axes"]:
            out = lw.emit(op.flip(out, axis))
        return out
    if node.op == "pad":
        return lw.emit(_pad(lw, node, args[0]))
    if len(args) == 2:
        return lw.emit(_binary(lw, node, *args))
    return lw.emit(_unary(lw, node, args[0]))


REDUCTIONS = ("prod", "argmax", "argmin", "any", "all")
MATH_OPS: tuple[str, ...] = (*FLOAT_UNARY, "sign", "bitwise_not", "isnan", "isinf", "isfinite", "remainder", "fmod",
                             "floor_divide", "trunc_divide", "atan2", "bitwise_and", "bitwise_or", "bitwise_xor",
                             "left_shift", "right_shift", "logical_and", "logical_or", "logical_xor", *REDUCTIONS,
                             "cumsum", "cumprod", "flip", "pad", "conv", "pool")
LOWERINGS: dict[str, Callable[[LoweringContext, Node], Any]] = {name: lower_math for name in MATH_OPS}
