"""recc/bench/ieee_cost.py runs: old and new epilogues agree on finite inputs and both files are written
(times are not asserted: the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

from recc.bench.ieee_cost import KERNELS, main


def test_ieee_cost_writes_results(tmp_path: Path) -> None:
    some = [name for name in KERNELS if name.startswith("dense")][:2]  # each kernel builds twice: keep it short
    main(["--batch", "5", "--rounds", "1", "--block-s", "0.001", "--kernels", ",".join(some), "--out", str(tmp_path)])
    result = json.loads((tmp_path / "ieee_cost.json").read_text())
    assert sorted(result["kernels"]) == sorted(some)
    assert all(row["old_us"] > 0 and row["new_us"] > 0 for row in result["kernels"].values())
    assert f"| {some[0]} |" in (tmp_path / "ieee_cost.md").read_text()
