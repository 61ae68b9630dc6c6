"""`recc bench --quick` end to end: every system's outputs match eager and every file is written.

Times are not asserted (the machine is shared and noisy); what must hold is that the harness runs each
system on the same inputs, checks them against eager at fp32 tolerance, and writes its outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from recc.cli import main


def test_bench_quick_matches_eager_and_writes_outputs(tmp_path: Path) -> None:
    start = time.perf_counter()
    status = main(["bench", "--quick", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - start

    assert status == 0
    for name in ("results.json", "results.md", "speedup.png", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    config = results["config"]
    assert config["quick"] and len(config["models"]) == 1 and len(config["batches"]) == 2
    cells = results["cells"]
    assert len(cells) == len(config["systems"]) * len(config["batches"])
    for cell in cells:
        assert cell["status"] == "ok", cell
        assert cell["matched"] is True and cell["max_abs_error"] <= 1e-5, cell
        assert cell["calls"] >= config["min_calls"]
    setups = {s["system"]: s for s in results["setups"]}
    assert "error" not in setups["ort"] and setups["ort"]["facts"]["embedding_bag_became_loop"] is True
    assert setups["ort-best"]["facts"]["loop_ops"] == 0
    assert all(s["memory"]["baseline_mb"] > 0 for s in setups.values())
    assert results["machine"]["versions"]["torch"] and results["roofline_limits"]["1"]["copy_gbps"] > 0
    assert "| ncf | 64 |" in (tmp_path / "results.md").read_text()
    assert elapsed < 60, f"--quick took {elapsed:.0f} s"
