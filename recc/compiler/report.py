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
    lines.extend(_precision_lines(report.get("precision") or {}))
    return "\n".join(lines)


def _precision_lines(section: dict[str, Any]) -> list[str]:
    if section.get("requested", "fp32") == "fp32":
        return []
    layers = section.get("layers", {})
    lines = [f"precision {section['requested']}: " + (", ".join(f"{k} {v}" for k, v in layers.items()) or
                                                       "no layer reduced (see quantize-dense's reasons)")]
    modes: dict[str, list[str]] = {}
    for layer, mode in section.get("activations", {}).items():
        modes.setdefault(mode, []).append(layer)
    if modes:
        lines.append("  int8 activations: " + "; ".join(f"{mode}: {', '.join(names)}" for mode, names in modes.items()))
    if section.get("auto_kept_fp32"):
        lines.append("  kept fp32 by auto (accuracy): " + ", ".join(section["auto_kept_fp32"]))
    acc = section.get("accuracy")
    if acc:
        lines.append(f"  vs fp32 on {acc['rows']} held-out rows: max abs {acc['max_abs']:.3g}, mean abs "
                     f"{acc['mean_abs']:.3g}, top-{acc['top_k']} agreement {acc['top_k_agreement']:.3f}")
        worst = list(acc.get("per_layer_max_abs", {}).items())[:3]
        if worst:
            lines.append("  largest single-layer contributions: " + ", ".join(f"{k} {v:.3g}" for k, v in worst))
    return lines
