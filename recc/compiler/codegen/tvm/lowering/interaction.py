"""dot_interaction: DLRM's pairwise dot interaction kernel (kernels/cpu/interaction.py)."""

from __future__ import annotations

from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu.interaction import dot_interaction
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Node


def lower_dot_interaction(lw: LoweringContext, node: Node) -> relax.Expr:
    dim = node.inputs[0].type.shape[1]
    features = node.inputs[1].type.shape[1] // dim
    fn = lw.kernel(("dot_interaction", dim, features), lambda: dot_interaction(dim, features))
    return lw.emit(relax.call_tir(fn, lw.args(node), lw.struct(node.output)))


LOWERINGS = {"dot_interaction": lower_dot_interaction}
