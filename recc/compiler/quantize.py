"""Reduced-precision arithmetic, defined once in numpy: the semantics of a dense layer marked
`precision="int8"` or `"bf16"` (the interpreter runs these; the kernels must match them to fp32
rounding, and the tests hold them to it).

int8 dense, y = act(x @ w.T + b):
- weights: symmetric per output channel, wq = round(w / ws) in [-127, 127], ws = max|w[n]| / 127;
- activations: asymmetric per row, dynamically: the row's range [lo, hi] (0 included, so zero is exact),
  xs = (hi - lo) / 255, zero point zp = round(-lo / xs), xq = clip(round(x / xs) + zp, 0, 255) as uint8
  (the u8 x s8 products the VNNI/AMX instructions multiply);
- int32 accumulation acc = xq @ wq.T, then the fp32 epilogue
  y = act(xs * ws[n] * acc + (b[n] - xs * zp * ws[n] * colsum(wq)[n])).
A row holding NaN or +-inf has a NaN scale: its outputs are all NaN (eager gives NaN or +-inf there).
- or activations statically, from calibration (`calibrate=N`, recc/compiler/calibration.py): one (xs, zp)
  per layer, the same formulas over the range of the layer's input on N calibration rows, for every row;
  values outside the calibrated range clamp to 0 or 255. A row holding NaN or +-inf still has a NaN scale.

bf16 dense: x and w rounded to bfloat16 (round to nearest even), products accumulated in fp32.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")
INT8_MAX = 127


def quantize_weight_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] float -> (wq int8 [N, K], scale float32 [N]), symmetric per output channel."""
    w = np.asarray(w, np.float32)
    amax = np.max(np.abs(w), axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scale = np.where(amax > 0, amax / np.float32(INT8_MAX), np.float32(1)).astype(np.float32)
    wq = np.clip(np.rint(w / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return wq, scale


def range_params(lo: np.ndarray, hi: np.ndarray, finite: np.ndarray | float = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, 1/scale, zero point as float32) for the ranges [lo, hi] (0 included by the caller):
    xs = (hi - lo) / 255 (1 where the span is 0) plus `finite` (NaN: a row holding NaN or +-inf),
    zp = round(-lo / xs) clamped to [0, 255]."""
    lo = np.asarray(lo, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        span = (np.asarray(hi, np.float32) - lo).astype(np.float32)
        scale = (np.where(span > 0, span / np.float32(255), np.float32(1)).astype(np.float32)
                 + np.asarray(finite, np.float32)).astype(np.float32)
        inv = (np.float32(1) / scale).astype(np.float32)
        zp = np.floor(np.clip(-lo * inv, 0, 255) + np.float32(0.5)).astype(np.float32)
    return scale, inv, zp


def row_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of x [M, K]: (scale, 1/scale, zero point as float32), as the quantize kernel computes them."""
    x = np.asarray(x, np.float32)
    with np.errstate(invalid="ignore"):
        lo = np.minimum(np.min(x, axis=1, initial=np.inf), np.float32(0))
        hi = np.maximum(np.max(x, axis=1, initial=-np.inf), np.float32(0))
    return range_params(lo, hi, _finite(x))


def _finite(x: np.ndarray) -> np.ndarray:
    """Per row: 0, or NaN where the row holds NaN or +-inf."""
    with np.errstate(invalid="ignore"):
        return np.sum(x - x, axis=1, dtype=np.float32)


def static_params(scale: float, zero_point: float) -> tuple[np.float32, np.float32, np.float32]:
    """A calibrated layer's (scale, 1/scale, zero point) as float32, as the static kernel bakes them in."""
    xs = np.float32(scale)
    return xs, np.float32(1) / xs, np.float32(zero_point)


def quantize_rows_u8(x: np.ndarray, act: tuple[float, float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [M, K] float32 -> (xq uint8 [M, K], scale [M], zero point [M] float32): per row dynamically, or
    with the calibrated `act` = (scale, zero point) for every row (NaN scale for a non-finite row)."""
    x = np.asarray(x, np.float32)
    if act is None:
        scale, inv, zp = row_params(x)
    else:
        xs, inv_s, zp_s = static_params(*act)
        scale = (np.full(len(x), xs, np.float32) + _finite(x)).astype(np.float32)
        inv, zp = np.full(len(x), inv_s, np.float32), np.full(len(x), zp_s, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.clip(x * inv[:, None] + zp[:, None], 0, 255)
        xq = np.floor(np.nan_to_num(v) + np.float32(0.5)).astype(np.uint8)
    return xq, scale, zp


def dense_int8(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
               act: tuple[float, float] | None = None) -> np.ndarray:
    """The int8 dense layer's pre-activation output for fp32 x [M, K], w [N, K], b [N] (module docstring);
    `act`: the calibrated activation (scale, zero point), None: per row, dynamically."""
    wq, ws = quantize_weight_int8(w)
    xq, xs, zp = quantize_rows_u8(x, act)
    acc = (xq.astype(np.int64) @ wq.astype(np.int64).T).astype(np.float32)  # exact: |acc| < 2^31
    colsum = wq.astype(np.int64).sum(axis=1).astype(np.float32)
    bias = np.zeros(w.shape[0], np.float32) if b is None else np.asarray(b, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        return (xs[:, None] * ws[None, :] * acc + (bias[None, :] - (xs * zp)[:, None] * (ws * colsum)[None, :])
                ).astype(np.float32)


BF16_CHUNK = 1 << 24  # elements converted at a time: a GB table is not copied four times over


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays NaN."""
    x = np.ascontiguousarray(x, np.float32)
    if x.size <= BF16_CHUNK:
        return _to_bf16(x)
    out = np.empty(x.shape, np.uint16)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for start in range(0, x.size, BF16_CHUNK):
        flat_out[start:start + BF16_CHUNK] = _to_bf16(flat_in[start:start + BF16_CHUNK])
    return out


def _to_bf16(x: np.ndarray) -> np.ndarray:
    bits = x.view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_bf16(x: np.ndarray) -> np.ndarray:
    return from_bf16(to_bf16(x))


def dense_bf16(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The bf16 dense layer's pre-activation output: bf16 operands, fp32 accumulation."""
    out = round_bf16(x).astype(np.float64) @ round_bf16(w).astype(np.float64).T
    return (out + (0 if b is None else np.asarray(b, np.float64))).astype(np.float32)


def dense_reference(precision: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                    act: tuple[float, float] | None = None) -> np.ndarray:
    """A dense layer's pre-activation output in `precision`, x of any rank [..., K] (`act`: int8's
    calibrated activation scale and zero point, else per row)."""
    lead = x.shape[:-1]
    flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
    if precision == "int8":
        out = dense_int8(flat, w, b, act)
    elif precision == "bf16":
        out = dense_bf16(flat, w, b)
    else:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return out.reshape(*lead, w.shape[0])


# -- 8-bit row-wise tables (the layout of FBGEMM's table-batched inference embeddings, TorchRec's INT8) --------
# Each row: its bias = fp16(min) and scale = fp16((max - bias) / 255) (1 where that is 0 or underflows), both
# rounded to fp16 first; q = clip(round((x - bias) / scale), 0, 255) as uint8; its value is q * scale + bias
# (fp32). Stored as dim bytes (padded to 4) then the fp16 scale and bias: dim + 4 bytes a row (3.56x smaller
# than fp32 at dim 32; fp32 scale and bias, as FBGEMM's `embedding_bag_byte_rowwise_offsets` keeps them,
# would make it dim + 8: 3.2x). Values beyond fp16's range (|x| > 65504) cannot be stored: such tables stay fp32.
FP16_MAX = 65504.0


def rowwise_row_bytes(dim: int) -> int:
    return -(-dim // 4) * 4 + 4


def row_lines(row_bytes: int, line: int = 64) -> float:
    """Expected cache lines one row touches, rows packed back to back from a line-aligned start (a row not
    aligned to the line straddles two part of the time: 36-byte rows touch 1.5 lines on average). An
    out-of-cache gather waits for lines, not bytes."""
    starts = [(i * row_bytes) % line for i in range(line)]
    return sum(-(-(s + row_bytes) // line) for s in starts) / line


def table_lines(dims_and_bags: list[tuple[int, int]]) -> dict[str, float]:
    """Cache lines a row of a batched lookup (tables (dim, bag size)) reads in each table format."""
    per_format = {"fp32": lambda d: 4 * d, "bf16": lambda d: 2 * d, "int8": rowwise_row_bytes}
    return {f: sum(bag * row_lines(size(dim)) for dim, bag in dims_and_bags) for f, size in per_format.items()}


def quantize_rowwise_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[rows, dim] float -> (q uint8 [rows, dim], scale [rows], bias [rows]); scale and bias are fp16 values
    (returned as float32: what the kernel computes with)."""
    table = np.asarray(table, np.float32)
    bias = table.min(axis=1).astype(np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        scale = ((table.max(axis=1) - bias) / np.float32(255)).astype(np.float16).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.floor((table - bias[:, None]) / scale[:, None] + np.float32(0.5)), 0, 255).astype(np.uint8)
    return q, scale, bias


def dequantize_rowwise(table: np.ndarray) -> np.ndarray:
    """What an 8-bit row-wise table reads back as (fp32): q * scale + bias, in the kernel's order."""
    q, scale, bias = quantize_rowwise_int8(table)
    return (q.astype(np.float32) * scale[:, None] + bias[:, None]).astype(np.float32)


def pack_rowwise_int8(table: np.ndarray) -> np.ndarray:
    """[rows, dim] float -> the rows' bytes, [rows * rowwise_row_bytes(dim)] uint8."""
    rows, dim = table.shape
    q, scale, bias = quantize_rowwise_int8(table)
    out = np.zeros((rows, rowwise_row_bytes(dim)), np.uint8)
    out[:, :dim] = q
    out[:, -4:-2] = scale.astype(np.float16).view(np.uint8).reshape(rows, 2)
    out[:, -2:] = bias.astype(np.float16).view(np.uint8).reshape(rows, 2)
    return out.reshape(-1)
