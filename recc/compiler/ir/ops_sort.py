"""The IR's sorting ops (type rules; registered into ops.OPS): `sort` (the values) and `argsort` (their
int64 positions) along `axis`, ascending or `descending`.

Both are stable (equal elements keep their order) and put NaN above every number (last ascending, first
descending), as torch.sort(stable=True). topk is their first k along the axis (a slice)."""

from __future__ import annotations

from typing import Any

from recc.compiler.ir.ops import _axis, _fail, _register
from recc.compiler.ir.types import TensorType


def _sorting(name: str, out_dtype: str | None):
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        if x.rank == 0:
            raise _fail(name, "sorting a 0-d tensor (reshape it to [1])")
        _axis(name, attrs["axis"], x.rank)
        if not isinstance(attrs.get("descending", False), bool):
            raise _fail(name, f"descending must be a bool, got {attrs.get('descending')!r}")
        return [TensorType(x.shape, out_dtype or x.dtype)]
    return infer


_register("sort", (1, 1), "the values sorted along `axis` (`descending`); stable, NaN above every number")(
    _sorting("sort", None))
_register("argsort", (1, 1), "int64 positions that sort along `axis` (`descending`); stable, NaN above every "
          "number")(_sorting("argsort", "int64"))
