"""The lowering registry: every op with a recc kernel is lowered by exactly one op module, listed in the
driver; everything else falls back to Relax operators."""

from __future__ import annotations

from recc.compiler.codegen.tvm.lowering import driver
from recc.compiler.codegen.tvm.lowering.generic import lower_generic

from recc.compiler.codegen.tvm.lowering.math import MATH_OPS
from recc.compiler.codegen.tvm.lowering.sort import LOWERINGS as SORT_LOWERINGS
from recc.compiler.codegen.tvm.lowering.window import LOWERINGS as WINDOW_LOWERINGS

KERNEL_OPS = {"dense", "embedding_bag", "embedding", "batched_embedding_bag", "dot_interaction",
              "target_attention", "attention", "gru", "augru"}


def test_every_kernel_op_has_one_lowering() -> None:
    per_module = [set(m.LOWERINGS) for m in driver.OP_MODULES]
    assert sum(len(ops) for ops in per_module) == len(set().union(*per_module))  # no op in two modules
    # recc kernels; math, sort and window ops as Relax
    assert set(driver.LOWERINGS) == KERNEL_OPS | set(MATH_OPS) | set(SORT_LOWERINGS) | set(WINDOW_LOWERINGS)
    assert all(fn is not lower_generic for fn in driver.LOWERINGS.values())
