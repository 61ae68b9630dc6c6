"""dense: recc's dense kernel (kernels/cpu/dense.py) where the weight and bias are float32 parameters,
its schedule from the tuner (measured here when tuning); else matmul + bias + activation in Relax."""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu import dense as dense_kernels
from recc.compiler.codegen.tvm.kernels.cpu.common import pack_weight
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.lowering.generic import ACTIVATIONS
from recc.compiler.codegen.tvm.tuning import DENSE_ROW_BLOCKS, time_kernel
from recc.compiler.ir import Node


def lower_dense(lw: LoweringContext, node: Node) -> relax.Expr:
    x, w = node.inputs[0], node.inputs[1]
    n, k = w.type.shape
    w_array = lw.graph.param_array(w)
    if w_array is None or w.type.dtype != "float32":
        return lower_dense_generic(lw, node)
    b_array = lw.graph.param_array(node.inputs[2]) if len(node.inputs) == 3 else np.zeros(n, np.float32)
    if b_array is None:
        return lower_dense_generic(lw, node)
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


def lower_dense_generic(lw: LoweringContext, node: Node) -> relax.Expr:
    args = lw.args(node)
    out = relax.op.matmul(args[0], relax.op.permute_dims(args[1], [1, 0]))
    if len(args) == 3:
        out = relax.op.add(out, args[2])
    act = node.attrs.get("activation", "none")
    out = lw.emit(out)  # emitted first: the activation reads its dtype (an unemitted call has none yet)
    return lw.emit(ACTIVATIONS[act](out, node.attrs)) if act != "none" else out


LOWERINGS = {"dense": lower_dense}
