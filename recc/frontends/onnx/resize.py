"""Resize (opset 11+) with scales, sizes and roi known at import time, as one matrix product per resized
axis.

Every Resize mode (nearest, linear, cubic; each coordinate transformation; antialias; exclude_outside) is
linear in the input and separable: ONNX's reference resizes one axis after another. So each resized axis
is an [out, in] interpolation matrix, computed here by running ONNX's own reference interpolation
(onnx.reference.ops.op_resize) on the identity, and applied as a `dense` over that axis; positions that
tf_crop_and_resize extrapolates get extrapolation_value, as the reference sets them after each axis.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from onnx import helper

from recc.compiler.ir import Value
from recc.compiler.ir.types import is_float
from recc.frontends.onnx.context import ConversionError, Ctx, OnnxNode, onnx_axis
from recc.frontends.onnx.shapes import permute


def _reference() -> Any:
    try:
        from onnx.reference.ops import op_resize
        op_resize._interpolate_1d_along_axis  # noqa: B018 - the function this converter runs
    except (ImportError, AttributeError) as e:
        raise ConversionError("this onnx version's reference Resize lacks the per-axis interpolation recc uses "
                              f"({e})") from e
    return op_resize


def _coefficients(node: OnnxNode) -> Callable[[float, float], np.ndarray]:
    ref = _reference()
    mode, antialias = node.attr("mode", "nearest"), int(node.attr("antialias", 0))
    if mode == "nearest":
        if antialias:
            raise ConversionError("antialias with mode 'nearest'")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
        return lambda ratio, scale: ref._nearest_coeffs(ratio, mode=nearest)
    if mode == "linear":
        return ref._linear_coeffs_antialias if antialias else ref._linear_coeffs
    if mode == "cubic":
        a = float(node.attr("cubic_coeff_a", -0.75))
        cubic = ref._cubic_coeffs_antialias if antialias else ref._cubic_coeffs
        return lambda ratio, scale: cubic(ratio, scale, A=a)
    raise ConversionError(f"Resize mode {mode!r}")


def _targets(ctx: Ctx, node: OnnxNode, dims: list[int], axes: list[int]) -> tuple[list[Any], list[int]]:
    """(scale per axis, output size per axis), as the reference computes them."""
    scales, sizes = ctx.static(node, 2, "Resize's scales"), ctx.static(node, 3, "Resize's sizes")
    rank = len(dims)
    if sizes is not None and sizes.size:
        out = list(dims)
        for i, a in enumerate(axes):
            out[a] = int(sizes[i])
        factors: list[Any] = [out[i] / dims[i] for i in range(rank)]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            if policy not in ("not_larger", "not_smaller"):
                raise ConversionError(f"keep_aspect_ratio_policy {policy!r}")
            chosen = np.array(factors)[axes]
            s = chosen.min() if policy == "not_larger" else chosen.max()
            factors = [s if i in axes else 1.0 for i in range(rank)]
            out = [int(s * dims[i] + 0.5) if i in axes else dims[i] for i in range(rank)]
        return factors, out
    if scales is None or not scales.size:
        raise ConversionError("Resize without scales or sizes")
    factors = [1.0] * rank
    for i, a in enumerate(axes):
        factors[a] = scales[i]
    return factors, [int(v) for v in (np.array(factors) * np.array(dims)).astype(int)]


def _roi(ctx: Ctx, node: OnnxNode, rank: int, axes: list[int]) -> list[tuple[float, float]] | None:
    roi = ctx.static(node, 1, "Resize's roi") if len(node.inputs) > 1 and node.inputs[1] else None
    if node.attr("coordinate_transformation_mode", "half_pixel") != "tf_crop_and_resize":
        return None
    if roi is None or not roi.size:
        raise ConversionError("tf_crop_and_resize without a roi")
    roi = np.ravel(roi).astype(np.float64)
    full = [(0.0, 1.0)] * rank
    n = len(roi) // 2
    for i, a in enumerate(axes if n == len(axes) else range(rank)):
        full[a] = (float(roi[i]), float(roi[n + i]))
    return full


def _resize(ctx: Ctx, node: OnnxNode) -> Value:
    if ctx.opset < 11:  # Resize-10: (X, scales), Upsample's semantics
        return _upsample(ctx, node)
    return _resize_core(ctx, node)


def _upsample(ctx: Ctx, node: OnnxNode) -> Value:
    """Upsample (opsets 7-9) and Resize-10: scales (an attribute before opset 9, else input 1), mode nearest
    or linear, as Resize with coordinate_transformation_mode asymmetric and nearest_mode floor."""
    mode = str(node.attr("mode", "nearest"))
    if node.attr("scales") is not None:
        scales_name = f"{node.outputs[0]}::scales"
        ctx.env[scales_name] = np.asarray(node.attr("scales"), np.float32)
    else:
        scales_name = node.inputs[1]
    proto = helper.make_node("Resize", [node.inputs[0], "", scales_name], list(node.outputs),
                             mode="linear" if mode in ("linear", "bilinear") else mode,
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _resize_core(ctx, OnnxNode.of(proto))


def _resize_core(ctx: Ctx, node: OnnxNode) -> Value:
    x = ctx.value(node, 0)
    if not is_float(x.type.dtype) or not all(isinstance(d, int) for d in x.type.shape):
        raise ConversionError(f"Resize of {x.type}: recc resizes floating-point tensors of static shape")
    dims, rank = [int(d) for d in x.type.shape], x.type.rank
    axes = [onnx_axis(int(a), rank) for a in node.attr("axes", list(range(rank)))]
    factors, out = _targets(ctx, node, dims, axes)
    roi = _roi(ctx, node, rank, axes)
    coefficients = _coefficients(node)
    for a in axes:
        if math.isclose(float(factors[a]), 1.0) and out[a] == dims[a] and \
                (roi is None or (math.isclose(roi[a][0], 0.0) and math.isclose(roi[a][1], 1.0))):
            continue
        x = _resize_axis(ctx, node, x, a, float(factors[a]), out[a], None if roi is None else list(roi[a]),
                         coefficients)
    return x


def _resize_axis(ctx: Ctx, node: OnnxNode, x: Value, axis: int, factor: float, size: int,
                 roi: list[float] | None, coefficients: Callable[[float, float], np.ndarray]) -> Value:
    if size <= 0:
        raise ConversionError(f"Resize to an empty axis {axis}")
    ref, n = _reference(), int(x.type.shape[axis])
    options = dict(roi=roi, coordinate_transformation_mode=node.attr("coordinate_transformation_mode", "half_pixel"),
                   exclude_outside=bool(node.attr("exclude_outside", 0)))
    matrix = ref._interpolate_1d_along_axis(np.eye(n), 0, factor, size, coefficients, extrapolation_value=0.0,
                                            **options)
    outside = ref._interpolate_1d_along_axis(np.zeros((n, 1)), 0, factor, size, coefficients,
                                             extrapolation_value=1.0, **options)[:, 0] != 0
    dtype = x.type.dtype
    rank = x.type.rank
    order = tuple(a for a in range(rank) if a != axis) + (axis,)
    moved = permute(ctx, x, order)
    weight = ctx.graph.add_param("resize_matrix", np.ascontiguousarray(matrix.astype(dtype)))
    y = ctx.emit("dense", [moved, weight], activation="none")
    y = permute(ctx, y, tuple(order.index(a) for a in range(rank)))
    if outside.any():
        mask = outside.reshape([size if a == axis else 1 for a in range(rank)])
        value = float(node.attr("extrapolation_value", 0.0))
        y = ctx.emit("where", [ctx.const(mask, "bool"), ctx.const(value, dtype), y])
    return y


CONVERTERS: dict[str, Callable[[Ctx, OnnxNode], Any]] = {"Resize": _resize, "Upsample": _upsample}

__all__ = ["CONVERTERS"]
