"""dense: recc's dense kernel (kernels/cpu/dense.py) where the weight and bias are float32 parameters,
its schedule from the tuner (measured here when tuning); else matmul + bias + activation in Relax."""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu import dense as dense_kernels
from recc.compiler.codegen.tvm.kernels.cpu import dense_bf16, dense_int8
from recc.compiler.codegen.tvm.kernels.cpu.dense_int8_avx2 import GROUP, LANES, dense_avx2
from recc.compiler.codegen.tvm.kernels.cpu.common import pack_weight
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.lowering.generic import ACTIVATIONS
from recc.compiler.codegen.tvm.tuning import DENSE_ROW_BLOCKS, time_kernel
from recc.compiler.ir import Node
from recc.compiler.quantize import to_bf16


def lower_dense(lw: LoweringContext, node: Node) -> relax.Expr:
    x, w = node.inputs[0], node.inputs[1]
    n, k = w.type.shape
    w_array = lw.graph.param_array(w)
    if w_array is None or w.type.dtype != "float32":
        return lower_dense_generic(lw, node)
    b_array = lw.graph.param_array(node.inputs[2]) if len(node.inputs) == 3 else np.zeros(n, np.float32)
    if b_array is None:
        return lower_dense_generic(lw, node)
    if node.attrs.get("precision", "fp32") == "int8":
        return lower_dense_int8(lw, node, np.asarray(w_array), np.asarray(b_array))
    if node.attrs.get("precision", "fp32") == "bf16":
        return lower_dense_bf16(lw, node, np.asarray(w_array), np.asarray(b_array))
    activation, alpha = node.attrs.get("activation", "none"), node.attrs.get("alpha", 0.01)
    rows, vector = dense_kernels.tile_for(n, lw.dense_tile)
    params = {"rows": rows, "vector": vector, **tuned_dense(lw, k, n, activation, alpha, rows, vector)}
    fn = lw.kernel(("dense", k, n, activation, alpha, tuple(sorted(params.items()))),
                   lambda: dense_kernels.dense_kernel(k, n, activation, alpha, **params))
    packed = lw.weight(f"{w.name}__packed{vector}", lambda: pack_weight(np.asarray(w_array), vector))
    bias_name = f"{node.inputs[2].name}__bias" if len(node.inputs) == 3 else f"zeros{n}__bias"
    bias = lw.weight(bias_name, lambda: np.ascontiguousarray(b_array, dtype=np.float32))
    xe = lw.value(x)
    lead = x.type.shape[:-1]
    if len(lead) != 1:
        flat_m = lw.product(lead)
        xe = lw.emit(relax.op.reshape(xe, [flat_m, lw.dim(k)]))
        flat_out = relax.TensorType([flat_m, lw.dim(n)], "float32")
        out = lw.emit(relax.call_tir(fn, [xe, packed, bias], flat_out))
        return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))
    return lw.emit(relax.call_tir(fn, [xe, packed, bias], lw.struct(node.output)))


def tuned_dense(lw: LoweringContext, k: int, n: int, activation: str, alpha: float, rows: int,
                vector: int) -> dict[str, Any]:
    """The dense kernel's schedule parameters for this layer from the tuner ({}: the defaults); a
    candidate is timed at batch 256 on random data."""
    if lw.tuner is None:
        return {}
    rng = np.random.default_rng(0)

    def measure(params: dict[str, Any]) -> float:
        kernel = dense_kernels.dense_kernel(k, n, activation, alpha, rows=rows, vector=vector, **params)
        return time_kernel(kernel, lw.tuner.target, lambda: [
            rng.random((256, k), dtype=np.float32),
            pack_weight(rng.random((n, k), dtype=np.float32), vector),
            rng.random(n, dtype=np.float32), np.zeros((256, n), np.float32)])

    grid = [{"row_block": rb} for rb in DENSE_ROW_BLOCKS if rb != dense_kernels.default_row_block(k, n)]
    return lw.tuner.params("dense", f"{k}x{n}:{activation}", {"grid": grid}, measure)


INT8_KERNELS = {**dense_int8.KERNELS, "avx2": dense_avx2}
INT8_PACKING = {"amx": (16, 4), "vnni": (16, 4), "avx2": (LANES, GROUP)}  # pack_int8's (lanes, group)
INT8_SCRATCH = {"amx": "uint8", "vnni": "uint8", "avx2": "int16"}  # the quantized activations' dtype


def int8_kernel(target: Any) -> str | None:
    """The int8 dense kernel family for a target: "amx", "vnni", "avx2" (`vpmaddwd`), or None (no AVX2)."""
    if target is not None and target.has("amx-tile", "amx-int8"):
        return "amx"
    if target is not None and target.has("avx512vnni", "avx512bw"):
        return "vnni"
    if target is not None and target.has("avx2"):
        return "avx2"
    return None


def bf16_kernel(target: Any) -> str | None:
    """The bf16 dense kernel family for a target: "amx" (AMX-BF16 `tdpbf16ps`), else "storage" (bf16
    weights, half the bytes, widened to fp32 in the fp32 kernel's register tile) on any CPU target."""
    if target is not None and target.has("amx-tile", "amx-bf16"):
        return "amx"
    return "storage" if target is not None and target.kind == "cpu" else None


def lower_dense_bf16(lw: LoweringContext, node: Node, w_array: np.ndarray, b_array: np.ndarray) -> relax.Expr:
    """The AMX-BF16 kernel: x rounded to bf16 inside it, bf16 weights packed here, fp32 accumulation; or,
    without AMX-BF16, the fp32 kernel on bf16 weights (the same numbers)."""
    kind = bf16_kernel(lw.target)
    assert kind is not None, "quantize-dense marks bf16 layers only for targets with a bf16 kernel"
    n, k = w_array.shape
    activation, alpha = node.attrs.get("activation", "none"), node.attrs.get("alpha", 0.01)
    if kind == "storage":
        rows, vector = dense_kernels.tile_for(n, lw.dense_tile)
        fn = lw.kernel(("dense_bf16_storage", k, n, activation, alpha, rows, vector),
                       lambda: dense_kernels.dense_kernel(k, n, activation, alpha, rows=rows, vector=vector, bf16=True))
        key = "_".join(v.name for v in node.inputs[1:]) + "__bf16s"
        packed = lw.weight(f"{key}_w", lambda: pack_weight(to_bf16(w_array), vector))
        bias = lw.weight(f"{key}_bias", lambda: np.ascontiguousarray(b_array, dtype=np.float32))
        return _call_2d(lw, node, lambda x, m: relax.call_tir(fn, [x, packed, bias],
                                                            relax.TensorType([m, lw.dim(n)], "float32")))
    key = "_".join(v.name for v in node.inputs[1:]) + "__bf16"
    weights = lw.weight(f"{key}_w", lambda: dense_bf16.pack_bf16(w_array))
    bias = lw.weight(f"{key}_bias", lambda: np.pad(b_array.astype(np.float32), (0, dense_int8.padded_n(n) - n)))
    config = lw.weight("amx_tile_config", dense_int8.tile_config)
    fn = lw.kernel(("dense_bf16_amx", k, n, activation, alpha),
                   lambda: dense_bf16.dense_amx_bf16(k, n, activation, alpha))
    def call(x: relax.Expr, m: Any) -> relax.Expr:
        out = lw.emit(relax.call_tir(fn, [x, weights, bias, config], [
            relax.TensorType([m, lw.dim(n)], "float32"),
            relax.TensorType([(m + 31) // 32 * 32, lw.dim(dense_bf16.row_stride(k))], "uint16")]))  # scratch
        return relax.TupleGetItem(out, 0)

    return _call_2d(lw, node, call)


def _call_2d(lw: LoweringContext, node: Node, call: Any) -> relax.Expr:
    """`call(x2d, rows)` on the dense input viewed as 2-D, its result viewed back as the output's shape."""
    x = node.inputs[0]
    m = lw.product(x.type.shape[:-1])
    xe = lw.value(x)
    if len(x.type.shape) != 2:
        xe = lw.emit(relax.op.reshape(xe, [m, lw.dim(x.type.shape[-1])]))
    out = lw.emit(call(xe, m))
    if len(x.type.shape) != 2:
        out = lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))
    return out


def lower_dense_int8(lw: LoweringContext, node: Node, w_array: np.ndarray, b_array: np.ndarray) -> relax.Expr:
    """The int8 kernel the target's features allow (it quantizes x's rows itself: per row, or with the
    node's calibrated activation scale and zero point baked in)."""
    n, k = w_array.shape
    kind = int8_kernel(lw.target)
    assert kind is not None, "quantize-dense marks int8 layers only for targets with an int8 dot product"
    activation, alpha = node.attrs.get("activation", "none"), node.attrs.get("alpha", 0.01)
    lanes, group = INT8_PACKING[kind]
    key = "_".join(v.name for v in node.inputs[1:]) + ("__int8" if lanes == 16 else f"__int8x{lanes}")
    packed: dict[str, np.ndarray] = {}

    def part(name: str) -> np.ndarray:  # quantized and packed once, whichever part is asked for first
        if not packed:
            packed.update(dense_int8.pack_int8(w_array, b_array, lanes, group))
        return packed[name]

    args = [lw.weight(f"{key}_{name}", lambda name=name: part(name)) for name in ("w", "scale", "colsum", "bias")]
    args.append(lw.weight("amx_tile_config", dense_int8.tile_config))  # read by the AMX kernel only
    act = (node.attrs["act_scale"], node.attrs["act_zero_point"]) if "act_scale" in node.attrs else None
    fn = lw.kernel((f"dense_int8_{kind}" + ("_static" if act else ""), k, n, activation, alpha, act),
                   lambda: INT8_KERNELS[kind](k, n, activation, alpha, act))
    def call(x: relax.Expr, m: Any) -> relax.Expr:
        mp = dense_int8.scratch_rows(m, kind)
        out = lw.emit(relax.call_tir(fn, [x, *args], [
            relax.TensorType([m, lw.dim(n)], "float32"),
            relax.TensorType([mp, lw.dim(dense_int8.row_stride(k))], INT8_SCRATCH[kind]),  # scratch: quantized x
            relax.TensorType([mp, lw.dim(2)], "float32")]))
        return relax.TupleGetItem(out, 0)

    return _call_2d(lw, node, call)


def lower_dense_generic(lw: LoweringContext, node: Node) -> relax.Expr:
    args = lw.args(node)
    out = relax.op.matmul(args[0], relax.op.permute_dims(args[1], [1, 0]))
    if len(args) == 3:
        out = relax.op.add(out, args[2])
    act = node.attrs.get("activation", "none")
    out = lw.emit(out)  # emitted first: the activation reads its dtype (an unemitted call has none yet)
    return lw.emit(ACTIVATIONS[act](out, node.attrs)) if act != "none" else out


LOWERINGS = {"dense": lower_dense}
