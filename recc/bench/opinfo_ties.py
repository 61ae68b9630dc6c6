"""Comparison of ops whose order of equal elements torch leaves unspecified.

`torch.sort` / `torch.argsort` with `stable=False` (the default) and `torch.topk` document no order among
equal elements; on CPU torch runs std::sort / std::nth_element, whose tie order is an accident of
libstdc++ (rows of up to 16 elements come out stable, longer ones do not). recc returns ties in stable
order. For these ops the harness accepts any positions that are distinct along the axis (a permutation
for sort / argsort) and read back exactly eager's values; values are compared as usual. `stable=True`
is compared exactly (docs/conformance.md).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Comparator = Callable[[list[torch.Tensor], Any, tuple[torch.Tensor, ...]], "str | None"]


def _dim_of(op_name: str, sample: Any) -> tuple[int, bool] | None:
    """(dim, ties unspecified) of a sort / argsort / topk sample; None for other ops."""
    args, kw = list(sample.args), dict(sample.kwargs)
    if op_name in ("sort", "argsort"):
        dim = kw.get("dim", args[0] if args else -1)
        return int(dim), not kw.get("stable", False)
    if op_name == "topk":
        dim = kw.get("dim", args[1] if len(args) > 1 else -1)
        return int(dim), True
    return None


def tie_comparator(op_name: str, sample: Any) -> Comparator | None:
    """A comparator for samples whose tie order torch leaves unspecified, else None (compare exactly)."""
    found = _dim_of(op_name, sample)
    if found is None or not found[1]:
        return None
    dim = found[0]

    def compare_ties(expected: list[torch.Tensor], actual: Any, inputs: tuple[torch.Tensor, ...]) -> str | None:
        got = list(actual) if isinstance(actual, (tuple, list)) else [actual]
        x = inputs[0]
        if len(got) != len(expected) or not got:
            return f"{len(expected)} outputs expected, got {len(got)}"
        positions, want_positions = got[-1], expected[-1]
        if positions.dtype != torch.int64 or positions.shape != want_positions.shape:
            return f"positions {positions.dtype} {list(positions.shape)}, eager {list(want_positions.shape)}"
        if x.dim() == 0:
            return None if torch.equal(positions, want_positions) else "positions of a 0-d input differ"
        d = dim % x.dim()
        if ((positions < 0) | (positions >= x.shape[d])).any():
            return "positions out of range"
        ordered = positions.sort(dim=d).values
        if (ordered.diff(dim=d) == 0).any():
            return "positions repeat along the axis"
        read, want = x.gather(d, positions), x.gather(d, want_positions)
        if not torch.equal(torch.isnan(read), torch.isnan(want)) or \
                not torch.equal(read[~torch.isnan(read)], want[~torch.isnan(want)]):
            return "positions read values that differ from eager's"
        for i, (e, a) in enumerate(zip(expected[:-1], got[:-1])):  # sort / topk values: exactly eager's
            if a.dtype != e.dtype or not torch.equal(torch.nan_to_num(a), torch.nan_to_num(e)) or \
                    not torch.equal(torch.isnan(a), torch.isnan(e)):
                return f"output {i}: values differ from eager's"
        return None

    return compare_ties
