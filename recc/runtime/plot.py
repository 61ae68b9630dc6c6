"""Latency-vs-load plots (matplotlib, Agg): tail latency against offered rate, one line per series, the SLA
as a horizontal line. Used by `recc loadgen --qps A,B,C --plot` and the throughput benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latency_vs_load(series: dict[str, list[dict[str, Any]]], path: str | Path, sla_ms: float | None = None,
                    percentiles: tuple[str, ...] = ("p50", "p95", "p99"), title: str = "") -> None:
    """`series`: name -> load results (each with `offered_qps` and `latency_ms` percentiles, as
    `recc loadgen` and `drive.measure` return them); one line per series and percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    styles = {"p50": ":", "p95": "-", "p99": "--"}
    for index, (name, runs) in enumerate(series.items()):
        points = sorted(((r["offered_qps"], r["latency_ms"]) for r in runs if r.get("latency_ms")), key=lambda p: p[0])
        color = f"C{index % 10}"
        for p in percentiles:
            axis.plot([q for q, _ in points], [lat[p] for _, lat in points], styles.get(p, "-"), marker=".",
                      color=color, label=f"{name} {p}" if len(series) > 1 else p)
    if sla_ms:
        axis.axhline(sla_ms, color="black", linewidth=0.8, alpha=0.6, label=f"SLA {sla_ms:g} ms")
    axis.set_yscale("log")
    axis.set_xlabel("offered load (queries/s, Poisson)")
    axis.set_ylabel("latency from arrival (ms)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
