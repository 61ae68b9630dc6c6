"""The ids range check at the top of every function (kernels/cpu/checks.py)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from recc.compiler.artifact import id_bounds
from recc.compiler.codegen.tvm.kernels.cpu.checks import id_range_check
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.ir import Value


def check_ids(lw: LoweringContext, value: Value) -> None:
    """Range-check an ids input first thing in the function, if its limits lie along one static axis (or
    cover it whole); every consumer then reads the check's in-place result, so the check runs before any
    gather. Other limits stay with the runtime's check before the call."""
    limits, shape = lw.id_limits.get(value.name), value.type.shape
    if not limits or value.type.dtype != "int64" or len({lim.axis for lim in limits}) != 1:
        return
    axis = limits[0].axis
    if axis is None:
        bounds = np.array([min(lim.rows for lim in limits)], np.int64)
    elif isinstance(shape[axis], int):
        # the kernel compares as unsigned: the uint64 bounds the runtime uses, bit for bit (no limit: -1)
        bounds = id_bounds(limits, shape[axis]).view(np.int64)
    else:
        return
    fn = lw.kernel(("check_ids", len(shape), axis, len(bounds)),
                   lambda: id_range_check(len(shape), axis, len(bounds)))
    var = lw.exprs[id(value)]
    lw.exprs[id(value)] = lw.emit(relax.call_tir_inplace(fn, [var, relax.const(bounds, "int64")], 0,
                                                         lw.struct(value)))
    if lw.counting:
        lw.checked_inputs.append(value.name)
