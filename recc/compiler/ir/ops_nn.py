"""The IR's neural-network window ops: convolution and pooling (type rules; registered into ops.OPS)."""

from __future__ import annotations

from typing import Any

from recc.compiler.ir.ops import OPS, OpDef, _fail, _register
from recc.compiler.ir.types import TensorType, dim_mul


@_register("conv", (2, 3), "N-d convolution x [N, C, *S], w [O, C/groups, *K], b [O]; `stride`, `padding` "
          "(symmetric), `dilation` per spatial axis, `groups`")
def _conv(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    nd = x.rank - 2
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    if nd < 1 or w.rank != x.rank or x.dtype != w.dtype or not all(len(v) == nd for v in (stride, padding, dilation)):
        raise _fail("conv", f"expects x [N, C, *S] and w [O, C/groups, *K] of one dtype, got {x} and {w}")
    if x.shape[1] != dim_mul(w.shape[1], groups) or not isinstance(w.shape[0], int) or w.shape[0] % groups:
        raise _fail("conv", f"channels of {x} do not match {w} with {groups} groups")
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise _fail("conv", f"bias must be [{w.shape[0]}], got {ts[2]}")
    spatial = []
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation):
        if not isinstance(size, int) or not isinstance(k, int):
            raise _fail("conv", "symbolic spatial dims are not supported")
        n = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if n < 1:
            raise _fail("conv", f"kernel {w.shape[2:]} larger than the padded input {x.shape[2:]}")
        spatial.append(n)
    return [TensorType((x.shape[0], w.shape[0], *spatial), x.dtype)]


def pool_geometry(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """(output length, padding to add after `p` on the right for the last window) as torch computes them."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n, max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p))


@_register("pool", (1, 1), "max / avg pooling over x [N, C, *S]: `kind`, `kernel`, `stride`, `padding`, "
          "`dilation`, `ceil_mode`, `count_include_pad`, `divisor` (torch's definitions)")
def _pool(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    nd = len(attrs["kernel"])
    if attrs["kind"] not in ("max", "avg") or x.rank != nd + 2:
        raise _fail("pool", f"expects kind max|avg over [N, C, *{nd} spatial dims], got {attrs['kind']} on {x}")
    out = []
    for i, size in enumerate(x.shape[2:]):
        if not isinstance(size, int):
            raise _fail("pool", "symbolic spatial dims are not supported")
        n, _ = pool_geometry(size, attrs["kernel"][i], attrs["stride"][i], attrs["padding"][i],
                             attrs["dilation"][i], attrs["ceil_mode"])
        if n < 1:
            raise _fail("pool", f"window larger than the padded input {x}")
        out.append(n)
    return [TensorType(x.shape[:2] + tuple(out), "int64" if attrs.get("indices") else x.dtype)]


OPS["pool_indices"] = OpDef("pool_indices", lambda ts, attrs: _pool(ts, dict(attrs, kind="max", indices=True)), (1, 1),
                            "where max pooling (`kind` max, attrs as pool) found each maximum: int64, the flat "
                            "position in the (N, C) plane of the unpadded input; a NaN wins (the last one)")


@_register("adaptive_pool", (1, 1), "adaptive max / avg pooling of x [N, C, *S] to [N, C, *`output_size`]: window "
          "i of an axis spans floor(i * in / out) .. ceil((i + 1) * in / out) (torch's); `kind` max|avg")
def _adaptive_pool(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, size = ts[0], tuple(attrs["output_size"])
    if attrs["kind"] not in ("max", "avg") or x.rank != len(size) + 2 or not all(
            isinstance(d, int) for d in x.shape[2:]) or any(n < 1 for n in size):
        raise _fail("adaptive_pool", f"expects kind max|avg over [N, C, *static dims] and positive sizes, got "
                                     f"{attrs['kind']} on {x} to {size}")
    return [TensorType(x.shape[:2] + size, "int64" if attrs.get("indices") else x.dtype)]


OPS["adaptive_pool_indices"] = OpDef(
    "adaptive_pool_indices", lambda ts, attrs: _adaptive_pool(ts, dict(attrs, kind="max", indices=True)), (1, 1),
    "where adaptive max pooling (`output_size`) found each maximum: int64 flat position in the (N, C) plane")


def conv_transpose_length(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """The output length of a transposed convolution along one axis (torch's formula)."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


@_register("conv_transpose", (2, 3), "N-d transposed convolution x [N, C, *S], w [C, O/groups, *K], b [O]; "
          "`stride`, `padding`, `output_padding`, `dilation` per spatial axis, `groups` (torch's definitions)")
def _conv_transpose(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    nd, groups = x.rank - 2, attrs["groups"]
    per_axis = [attrs[k] for k in ("stride", "padding", "output_padding", "dilation")]
    if nd < 1 or w.rank != x.rank or x.dtype != w.dtype or not all(len(v) == nd for v in per_axis):
        raise _fail("conv_transpose", f"expects x [N, C, *S] and w [C, O/groups, *K] of one dtype, got {x} and {w}")
    if x.shape[1] != w.shape[0] or not isinstance(w.shape[0], int) or groups < 1 or w.shape[0] % groups:
        raise _fail("conv_transpose", f"channels of {x} do not match {w} with {groups} groups")
    out_channels = dim_mul(w.shape[1], groups)
    if len(ts) == 3 and ts[2].shape != (out_channels,):
        raise _fail("conv_transpose", f"bias must be [{out_channels}], got {ts[2]}")
    spatial = []
    for size, k, s, p, op, d in zip(x.shape[2:], w.shape[2:], *per_axis):
        if not isinstance(size, int) or not isinstance(k, int):
            raise _fail("conv_transpose", "symbolic spatial dims are not supported")
        if s < 1 or d < 1 or p < 0 or not 0 <= op < max(s, d):
            raise _fail("conv_transpose", f"output_padding {op} must be below the stride {s} or dilation {d}")
        n = conv_transpose_length(size, k, s, p, op, d)
        if n < 1:
            raise _fail("conv_transpose", f"padding {p} leaves no output of {x} with kernel {w.shape[2:]}")
        spatial.append(n)
    return [TensorType((x.shape[0], out_channels, *spatial), x.dtype)]
