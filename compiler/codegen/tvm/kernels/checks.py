"""The embedding-id range check, inside the compiled function: TVM's gathers do not check bounds.

    id_range_check(period, inner, slot) -> (ids[n] i64, bounds[period] i64, flags[k] i32, safe[n] i64)

Element i of the flattened ids must satisfy 0 <= ids[i] < bounds[(i // inner) % period] (compared as
unsigned, so a negative id fails the same test; a bound of -1 means "not an id"). `safe` is the ids with
every bad one replaced by 0, and the gathers read `safe`, so a bad id can never make them read outside a
table. `flags[slot]` is set to 1 if any id was bad, else 0: `flags` is a small buffer the runtime passes in
and reads after the call (written in place, not a function output: an extra output would cost a tuple
and a DLPack conversion per call); on a 1 it discards the result and raises a ValueError naming the input,
table and id. One pass over the ids at memory speed, no Python on the way: this
replaced a numpy check that cost more than the model at batch 1.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T


def id_range_check(period: int, inner: int, slot: int, slots: int) -> tirx.PrimFunc:
    P, INNER, SLOT, K = period, inner, slot, slots

    @T.prim_func(private=True)
    def check_ids(var_ids: T.handle, bounds: T.Buffer((P,), "int64"), flags: T.Buffer((K,), "int32"),
                  var_safe: T.handle):
        T.func_attr({"tir.noalias": True})
        n = T.int64()
        ids = T.match_buffer(var_ids, (n,), "int64")
        safe = T.match_buffer(var_safe, (n,), "int64")
        bad = T.alloc_buffer((1,), "int32")
        bad[0] = 0
        for i in range(n):
            ok = T.meta_var(T.Cast("uint64", ids[i]) < T.Cast("uint64", bounds[i // INNER % P]))
            safe[i] = T.Select(ok, ids[i], T.int64(0))
            bad[0] = T.max(bad[0], T.Select(ok, 0, 1))
        flags[SLOT] = bad[0]

    return check_ids
