"""Reference semantics of the IR's math ops (elementwise functions, integer arithmetic, logic, the
arg/any/all/prod reductions, running sums, flip, pad, stable sorts): numpy, in the tensor's dtype, matching
eager PyTorch where numpy differs (sign(NaN) = 0, integer division by zero raises, NaN is the largest value
for argmax, argmin, sort and argsort)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from recc.compiler.ir.ops_nn import pool_geometry

Kernel = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]
_erfinv = np.vectorize(lambda v: _erfinv_scalar(float(v)), otypes=[np.float64])


_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
            -0.00417768164, 0.246640727, 1.50140941)
_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
         0.00943887047, 1.00167406, 2.83297682)


def _erfinv_scalar(y: float) -> float:
    """Inverse erf: Giles' approximation refined by Newton steps in float64."""
    if math.isnan(y) or abs(y) > 1:
        return math.nan
    if abs(y) == 1:
        return math.copysign(math.inf, y)
    w = -math.log((1.0 - y) * (1.0 + y))
    t, coefs = (w - 2.5, _CENTRAL) if w < 5 else (math.sqrt(w) - 3.0, _TAIL)
    p = 0.0
    for c in coefs:
        p = p * t + c
    x = p * y
    for _ in range(4):
        slope = 2 / math.sqrt(math.pi) * math.exp(-x * x)
        if slope == 0:
            break
        x -= (math.erf(x) - y) / slope
    return x


def _same(f: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    return lambda x, a: np.asarray(f(x[0])).astype(x[0].dtype)


def _nonzero_divisor(b: np.ndarray) -> None:
    if np.issubdtype(b.dtype, np.integer) and np.any(b == 0):
        raise ZeroDivisionError("integer division by zero")


def _int_div(op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Kernel:
    def kernel(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
        _nonzero_divisor(x[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(op(x[0], x[1])).astype(x[0].dtype)
    return kernel


def _trunc_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q)
    return np.trunc(a / b)


def _arg(reduce: Callable[..., np.ndarray]) -> Kernel:
    def kernel(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
        (axis,) = a["axes"]
        out = reduce(x[0], axis=axis)  # numpy: the first NaN wins, as in torch
        return np.expand_dims(out, axis) if a.get("keepdims") else out
    return kernel


def _reduce(f: Callable[..., np.ndarray], dtype: str | None = None) -> Kernel:
    return lambda x, a: np.asarray(f(x[0], axis=tuple(a["axes"]), keepdims=a.get("keepdims", False))).astype(
        dtype or x[0].dtype)


def _shift(left: bool) -> Kernel:
    def kernel(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
        bits = x[0].dtype.itemsize * 8
        b = np.broadcast_to(x[1], np.broadcast_shapes(x[0].shape, x[1].shape))
        out = np.left_shift(x[0], b) if left else np.right_shift(x[0], np.clip(b, 0, bits - 1))
        too_far = (b < 0) | (b >= bits)  # torch: a shift by the width or more gives 0 (or the sign, right)
        fill = 0 if left else np.where(x[0] < 0, -1, 0)
        return np.where(too_far, fill, out).astype(x[0].dtype)
    return kernel


def _pad(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    data = x[0]
    crop = tuple(slice(max(0, -lo), d - max(0, -hi)) for d, (lo, hi) in zip(data.shape, a["pads"]))
    grow = [(max(0, lo), max(0, hi)) for lo, hi in a["pads"]]
    return np.pad(data[crop], grow, constant_values=np.asarray(a["value"]).astype(data.dtype))


def _float(f: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    def kernel(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(f(x[0])).astype(x[0].dtype)
    return kernel


def _scatter(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    data, index, src = x
    axis = a["axis"] % data.ndim
    if index.size and (index.min() < 0 or index.max() >= data.shape[axis]):  # torch refuses negative ones too
        bad = index.min() if index.min() < 0 else index.max()
        raise IndexError(f"index {bad} is out of bounds for a dimension of size {data.shape[axis]}")
    out = data.copy()
    where = list(np.indices(index.shape, sparse=True))
    where[axis] = index.astype(np.int64)
    where_t = tuple(np.broadcast_to(w, index.shape) for w in where)
    reduce = a.get("reduce", "none")
    if reduce == "none":
        out[where_t] = src
    else:
        {"sum": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}[reduce].at(out, where_t, src)
    return out


def _conv(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """Direct convolution: for each kernel position, the strided input patch times that weight slice."""
    data, w = x[0], x[1]
    nd, groups = data.ndim - 2, a["groups"]
    s, d = a["stride"], a["dilation"]
    xp = np.pad(data, [(0, 0), (0, 0)] + [(p, p) for p in a["padding"]])
    out_sp = [(xp.shape[2 + i] - d[i] * (w.shape[2 + i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    per_in, per_out = data.shape[1] // groups, w.shape[0] // groups
    out = np.zeros((data.shape[0], w.shape[0], *out_sp), dtype=data.dtype)
    for k in np.ndindex(*w.shape[2:]):
        window = tuple(slice(k[i] * d[i], k[i] * d[i] + s[i] * (out_sp[i] - 1) + 1, s[i]) for i in range(nd))
        patch = xp[(slice(None), slice(None)) + window]
        for g in range(groups):
            taps = w[(slice(g * per_out, (g + 1) * per_out), slice(None)) + k]
            out[:, g * per_out:(g + 1) * per_out] += np.einsum(
                "nc...,oc->no...", patch[:, g * per_in:(g + 1) * per_in], taps).astype(data.dtype)
    if len(x) == 3:
        out += x[2].reshape((1, -1) + (1,) * nd)
    return out


def pool_padding(shape: tuple[int, ...], a: dict[str, Any]) -> list[tuple[int, int]]:
    """(left, right) padding per spatial axis: torch's `padding`, plus room for ceil_mode's last window."""
    return [(p, p + pool_geometry(n, k, s, p, d, a["ceil_mode"])[1])
            for n, k, s, p, d in zip(shape, a["kernel"], a["stride"], a["padding"], a["dilation"])]


def pool_divisor(shape: tuple[int, ...], a: dict[str, Any]) -> np.ndarray:
    """avg pooling's divisor per output position, as torch counts it: `divisor` if given, else the window's
    positions inside the input padded by `padding` (count_include_pad) or inside the input itself."""
    pads = pool_padding(shape, a)
    inside = np.pad(np.ones(shape), [(p, p) for p in a["padding"]], constant_values=float(a["count_include_pad"]))
    inside = np.pad(inside, [(0, r - l) for l, r in pads])
    counts = _windows(inside[None, None], a, np.add, 0.0)[0, 0]
    return np.full(counts.shape, float(a["divisor"])) if a.get("divisor") else counts


def _windows(xp: np.ndarray, a: dict[str, Any], combine: Any, start: Any) -> np.ndarray:
    nd = len(a["kernel"])
    s, d = a["stride"], a["dilation"]
    out_sp = [(xp.shape[2 + i] - d[i] * (a["kernel"][i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    out = np.full(xp.shape[:2] + tuple(out_sp), start, dtype=xp.dtype)
    for k in np.ndindex(*a["kernel"]):
        window = tuple(slice(k[i] * d[i], k[i] * d[i] + s[i] * (out_sp[i] - 1) + 1, s[i]) for i in range(nd))
        out = combine(out, xp[(slice(None), slice(None)) + window])
    return out


def _pool(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    data = x[0]
    pads = [(0, 0), (0, 0)] + pool_padding(data.shape[2:], a)
    if a["kind"] == "max":
        low = -np.inf if data.dtype.kind == "f" else np.iinfo(data.dtype).min
        return _windows(np.pad(data, pads, constant_values=low), a, np.maximum, low)
    total = _windows(np.pad(data, pads), a, np.add, 0)
    divisor = pool_divisor(data.shape[2:], a)
    if data.dtype.kind == "f":
        return (total / divisor).astype(data.dtype)
    return np.trunc(total / divisor).astype(data.dtype)  # integer average truncates, as torch's


def _argsort(x: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    """Stable, NaN above every number (numpy's order); descending as the reversed ascending order of the
    reversed data, so that equal elements still keep their order."""
    data, axis = x[0], a["axis"] % x[0].ndim
    if not a.get("descending"):
        return np.argsort(data, axis=axis, kind="stable").astype(np.int64)
    order = np.argsort(np.flip(data, axis), axis=axis, kind="stable")
    return np.ascontiguousarray(np.flip(data.shape[axis] - 1 - order, axis)).astype(np.int64)


MATH_KERNELS: dict[str, Kernel] = {
    **{name: _float(getattr(np, fn)) for name, fn in (
        ("sin", "sin"), ("cos", "cos"), ("tan", "tan"), ("asin", "arcsin"), ("acos", "arccos"), ("atan", "arctan"),
        ("sinh", "sinh"), ("cosh", "cosh"), ("asinh", "arcsinh"), ("acosh", "arccosh"), ("atanh", "arctanh"),
        ("floor", "floor"), ("ceil", "ceil"), ("round", "round"), ("trunc", "trunc"), ("log1p", "log1p"),
        ("expm1", "expm1"), ("log2", "log2"), ("log10", "log10"))},
    "sign": _same(lambda v: np.where(np.isnan(v), 0, np.sign(v)) if v.dtype.kind == "f" else np.sign(v)),
    "bitwise_not": _same(lambda v: np.logical_not(v) if v.dtype == np.bool_ else np.invert(v)),
    "erfinv": _float(lambda v: _erfinv(v)),
    "isnan": lambda x, a: np.isnan(x[0]) if x[0].dtype.kind == "f" else np.zeros(x[0].shape, bool),
    "isinf": lambda x, a: np.isinf(x[0]) if x[0].dtype.kind == "f" else np.zeros(x[0].shape, bool),
    "isfinite": lambda x, a: np.isfinite(x[0]) if x[0].dtype.kind == "f" else np.ones(x[0].shape, bool),
    "remainder": _int_div(np.mod),
    "fmod": _int_div(np.fmod),
    "floor_divide": _int_div(np.floor_divide),
    "trunc_divide": _int_div(_trunc_divide),
    "atan2": lambda x, a: np.arctan2(x[0], x[1]).astype(x[0].dtype),
    "bitwise_and": lambda x, a: np.bitwise_and(x[0], x[1]),
    "bitwise_or": lambda x, a: np.bitwise_or(x[0], x[1]),
    "bitwise_xor": lambda x, a: np.bitwise_xor(x[0], x[1]),
    "left_shift": _shift(left=True),
    "right_shift": _shift(left=False),
    "logical_and": lambda x, a: np.logical_and(x[0], x[1]),
    "logical_or": lambda x, a: np.logical_or(x[0], x[1]),
    "logical_xor": lambda x, a: np.logical_xor(x[0], x[1]),
    "prod": _reduce(np.prod),
    "any": _reduce(np.any, "bool"),
    "all": _reduce(np.all, "bool"),
    "argmax": _arg(np.argmax),
    "argmin": _arg(np.argmin),
    "cumsum": lambda x, a: np.cumsum(x[0], axis=a["axis"], dtype=x[0].dtype),
    "cumprod": lambda x, a: np.cumprod(x[0], axis=a["axis"], dtype=x[0].dtype),
    "flip": lambda x, a: np.ascontiguousarray(np.flip(x[0], axis=tuple(a["axes"]))),
    "pad": _pad,
    "scatter": _scatter,
    "conv": _conv,
    "pool": _pool,
    "argsort": _argsort,
    "sort": lambda x, a: np.take_along_axis(x[0], _argsort(x, a), axis=a["axis"] % x[0].ndim),
}

__all__ = ["MATH_KERNELS"]
