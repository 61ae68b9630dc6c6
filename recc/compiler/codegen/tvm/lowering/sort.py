"""sort and argsort through TVM's (tvm.contrib.sort: std::stable_sort per row, so equal elements keep
their order ascending and descending alike), with torch's place for NaN.

TVM compares with < / >, which leaves NaN's place undefined; floats therefore sort twice: by value with
NaN read as 0, then (stably) by the NaN flag in that order, NaN last ascending and first descending. The
values of a float sort are gathered through those positions (NaN's bits and -0.0's place kept); integer
values are sorted directly. Keys narrower than TVM's sort takes (bool, int8/16, uint8, float16,
bfloat16) are widened to int32 / float32, which keeps their order. A symbolic sorted axis works: the
sort is a call into TVM's runtime per row, whatever its length."""

from __future__ import annotations

from typing import Any, Callable

from tvm import relax

from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Node
from recc.compiler.ir.types import is_float

op = relax.op
_WIDER = {"bool": "int32", "int8": "int32", "int16": "int32", "uint8": "int32", "float16": "float32",
          "bfloat16": "float32"}


def _key(lw: LoweringContext, x: relax.Expr, dtype: str) -> relax.Expr:
    return lw.emit(op.astype(x, _WIDER[dtype])) if dtype in _WIDER else x


def argsort(lw: LoweringContext, x: relax.Expr, dtype: str, axis: int, descending: bool) -> relax.Expr:
    """int64 positions that sort `x` along `axis` stably, NaN above every number."""
    key = _key(lw, x, dtype)
    if not is_float(dtype):
        return lw.emit(op.argsort(key, axis, descending, "int64"))
    nans = lw.emit(op.isnan(key))
    clean = lw.emit(op.where(nans, relax.const(0.0, str(key.ty.dtype)), key))
    by_value = lw.emit(op.argsort(clean, axis, descending, "int64"))
    flags = lw.emit(op.gather_elements(op.astype(nans, "int32"), by_value, axis))
    by_nan = lw.emit(op.argsort(flags, axis, descending, "int64"))
    return lw.emit(op.gather_elements(by_value, by_nan, axis))


def lower_sort(lw: LoweringContext, node: Node) -> relax.Expr:
    x, dtype = lw.value(node.inputs[0]), node.inputs[0].type.dtype
    axis, descending = node.attrs["axis"] % node.inputs[0].type.rank, bool(node.attrs.get("descending", False))
    if node.op == "argsort":
        return argsort(lw, x, dtype, axis, descending)
    if is_float(dtype):
        return lw.emit(op.gather_elements(x, argsort(lw, x, dtype, axis, descending), axis))
    values = lw.emit(op.sort(_key(lw, x, dtype), axis, descending))
    return lw.emit(op.astype(values, dtype)) if dtype in _WIDER else values


LOWERINGS: dict[str, Callable[[LoweringContext, Node], Any]] = {"sort": lower_sort, "argsort": lower_sort}
