"""The embedding-id range check, inside the compiled function: TVM's gathers do not check bounds.

    id_range_check(rank, axis, inner_axes) -> (ids[d0, .., d{rank-1}] i64, bounds[P] i64)   (in place)

Every id must satisfy 0 <= id < bounds[k], k the id's index along `axis` (one bound for all ids when
`axis` is None), compared as unsigned so a negative id fails the same test. The kernel reads the ids once
(no copy, nothing written) and fails with an `assert` if any is out of range: the compiled function
stops there with an error, before any gather has run, and the runtime then names the input, table and
id (runtime/compiled_model.py). Lowering calls it with `call_tir_inplace` and hands the gathers its
(aliasing) result, so it cannot be removed and runs first.

Why here: a numpy pass per call cost ~3 us per ids input at batch 1 (DIN has four), and the earlier
version of this kernel wrote a checked copy of the ids (1.5 ms extra at DLRM-RMC1 batch 1024).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.artifact import BAD_ID_MESSAGE

__all__ = ["BAD_ID_MESSAGE", "id_range_check"]


def id_range_check(rank: int, axis: int | None, period: int, dtype: str = "int64", shift: int = 0) -> tirx.PrimFunc:
    """`period`: the number of bounds (the static size of `axis`; 1 when `axis` is None). `dtype`: the ids'
    integer type (read as int64). `shift` is added to every id before the unsigned comparison: a gather
    that wraps negative ids once (`w[ids]`) checks `-rows <= id < rows` as `id + rows < 2 * rows`."""
    dims = [tirx.Var(f"d{i}", "int64") for i in range(rank)]
    one = tirx.IntImm("int64", 1)
    outer, mid, inner = one, one, one
    for i, d in enumerate(dims):
        if axis is None or i < axis:
            outer = outer * d
        elif i == axis:
            mid = d
        else:
            inner = inner * d
    total = outer * mid * inner
    P = period

    @T.prim_func(private=True)
    def check_ids(var_ids: T.handle, bounds: T.Buffer((P,), "int64")):
        T.func_attr({"tir.noalias": True})
        ids = T.match_buffer(var_ids, dims, dtype)
        flat = T.decl_buffer((total,), dtype, data=ids.data)
        bad = T.alloc_buffer((1,), "int32")
        top = T.alloc_buffer((1,), "uint64")
        bad[0] = 0
        for o in range(outer):
            for m in range(mid):
                top[0] = T.uint64(0)
                for i in range(inner):
                    top[0] = T.max(top[0], T.Cast("uint64", T.Cast("int64", flat[(o * mid + m) * inner + i])
                                                             + T.int64(shift)))
                bad[0] = bad[0] | T.Cast("int32", top[0] >= T.Cast("uint64", bounds[m]))
        assert bad[0] == 0, BAD_ID_MESSAGE

    return check_ids
