"""gru / augru over a whole sequence: recc's recurrent kernel (kernels/cpu/recurrent.py), the hidden
weights packed [3H/16, H, 16] as for dense, the bias padded to match."""

from __future__ import annotations

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu import recurrent as recurrent_kernels
from recc.compiler.codegen.tvm.kernels.cpu.common import pack_weight, pad_vector
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Node


def lower_recurrent(lw: LoweringContext, node: Node) -> relax.Expr:
    w_hh, b_hh = node.inputs[-2], node.inputs[-1]
    w_array, b_array = lw.graph.param_array(w_hh), lw.graph.param_array(b_hh)
    if w_array is None or b_array is None:
        raise NotImplementedError(f"codegen: {node.op} needs its hidden weights and bias as parameters")
    length, hidden = node.inputs[0].type.shape[1], w_hh.type.shape[1]
    fn = lw.kernel((f"{node.op}_sequence", length, hidden),
                   lambda: recurrent_kernels.gru_sequence(length, hidden, node.op))
    packed = lw.weight(f"{w_hh.name}__packed", lambda: pack_weight(np.asarray(w_array, np.float32)))
    bias = lw.weight(f"{b_hh.name}__padded", lambda: pad_vector(np.asarray(b_array, np.float32)))
    data = [lw.value(v) for v in node.inputs[:-2]]
    return lw.emit(relax.call_tir(fn, data + [packed, bias], lw.struct(node.output)))


LOWERINGS = {"gru": lower_recurrent, "augru": lower_recurrent}
