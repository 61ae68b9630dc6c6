"""Pass reports as one aligned table a person can read."""

from __future__ import annotations

from typing import Any


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(d.items())) or "-"


def format_report(report: dict[str, Any]) -> str:
    rows = [("pass", "ms", "nodes", "rewrites", "rejected (reason)")]
    for p in report["passes"]:
        nodes = f"{p['nodes_before']} -> {p['nodes_after']}"
        rows.append((p["name"] + (" (disabled)" if p.get("skipped") else ""), f"{p['ms']:.1f}", nodes,
                     _counts(p["rewrites"]), _counts(p["rejects"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[-1]))
    lines.append("")
    lines.append("final ops: " + ", ".join(f"{k} x{v}" for k, v in report["final_ops"].items()))
    if report.get("kernels"):
        lines.append("recc kernels: " + ", ".join(f"{k} x{v}" for k, v in report["kernels"].items()))
    if report.get("unchecked_ids"):
        lines.append("note: ids computed in-graph are range-checked inside the compiled function, right before "
                     "the gather: " + ", ".join(report["unchecked_ids"]))
    return "\n".join(lines)
