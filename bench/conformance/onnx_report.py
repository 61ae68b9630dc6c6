"""The conformance run's record (onnx_node.json) and its summary page (onnx_node.md)."""

from __future__ import annotations

import datetime
import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import onnx_cases

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("passed", "wrong", "refused", "crashed")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def summary(results: dict[str, dict[str, Any]], with_ort: bool) -> dict[str, Any]:
    ran = {n: r for n, r in results.items() if r["status"] != "excluded"}
    counts = Counter(r["status"] for r in ran.values())
    out: dict[str, Any] = {
        "cases": len(results),
        "excluded": sum(1 for r in results.values() if r["status"] == "excluded"),
        "excluded_by_category": dict(Counter(r["category"] for r in results.values() if r["status"] == "excluded")
                                     .most_common()),
        "non_excluded": len(ran),
        **{s: counts.get(s, 0) for s in STATUSES},
        "passed_specialized_on_inputs": sum(1 for r in ran.values()
                                            if r["status"] == "passed" and r.get("specialized_inputs")),
        "recc_pass_rate": round(counts.get("passed", 0) / len(ran), 4) if ran else None,
    }
    if with_ort:
        ort = sum(1 for r in ran.values() if r.get("ort"))
        out["ort_passed"] = ort
        out["ort_pass_rate"] = round(ort / len(ran), 4) if ran else None
        out["recc_passed_where_ort_fails"] = sum(1 for r in ran.values() if r["status"] == "passed" and not r.get("ort"))
    return out


def record(results: dict[str, dict[str, Any]], command: str, seconds: float, with_ort: bool) -> dict[str, Any]:
    from recc.bench.machine import describe_machine

    import onnx
    import onnxruntime

    machine = describe_machine()
    return {
        "what": "ONNX node test cases (onnx.backend.test, kind='node') on recc.onnx_backend.RecBackend, with "
                "ONNX Runtime on the same cases as the anchor",
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": machine["cpu_model"],
        "machine": machine,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "max_opset": onnx_cases.MAX_OPSET,
        "seconds": round(seconds, 1),
        "categories": onnx_cases.CATEGORIES,
        "summary": summary(results, with_ort),
        "cases": {n: results[n] for n in sorted(results)},
    }


def failing_op(name: str, result: dict[str, Any]) -> str:
    """The op a failure is charged to: the one named in a refusal, else the case's op(s)."""
    m = re.search(r"(?:op |convert )(?:[\w.]+::)?(\w+) node ", result.get("reason", ""))
    if result["status"] == "refused" and m:
        return m.group(1)
    ops = result.get("ops", [])
    return ops[0] if len(ops) == 1 else "+".join(ops[:4]) + ("+..." if len(ops) > 4 else "")


def _table(rows: list[tuple[Any, ...]], head: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def markdown(rec: dict[str, Any]) -> str:
    s = rec["summary"]
    lines = [f"# ONNX node tests on recc (opsets <= {rec['max_opset']})", "",
             f"Command: `{rec['command']}` at {rec['git_commit'][:12]}{' (dirty)' if rec['git_dirty'] else ''}, "
             f"{rec['date']}, {rec['cpu']}; onnx {rec['onnx']}, onnxruntime {rec['onnxruntime']}; "
             f"{rec['seconds']:.0f} s.", ""]
    rows = [("cases", s["cases"]), ("excluded", s["excluded"]), ("non-excluded", s["non_excluded"])]
    rows += [(k, s[k]) for k in STATUSES]
    rows += [("passed, specialized on an input's value", s["passed_specialized_on_inputs"]),
             ("**recc pass rate**", f"**{100 * (s['recc_pass_rate'] or 0):.1f}%**")]
    if "ort_pass_rate" in s:
        rows += [("ONNX Runtime passed", s["ort_passed"]),
                 ("**ONNX Runtime pass rate**", f"**{100 * (s['ort_pass_rate'] or 0):.1f}%**")]
    lines += _table(rows, ("", "count")) + ["", "## Excluded by category", ""]
    lines += _table([(k, v, rec["categories"][k]) for k, v in s["excluded_by_category"].items()],
                    ("category", "cases", "why"))
    lines += ["", "## Failures by op", ""]
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, r in rec["cases"].items():
        if r["status"] in ("wrong", "refused", "crashed"):
            groups[(failing_op(name, r), r["status"])].append(name)
    rows2 = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    lines += _table([(op, st, len(ns), ", ".join(ns[:6]) + (" ..." if len(ns) > 6 else ""))
                     for (op, st), ns in rows2], ("op", "status", "cases", "examples"))
    lines += ["", "## Every wrong or crashed case", ""]
    lines += _table([(n, r["status"], r.get("reason", "")[:300]) for n, r in rec["cases"].items()
                     if r["status"] in ("wrong", "crashed")], ("case", "status", "reason"))
    return "\n".join(lines) + "\n"


__all__ = ["record", "markdown", "summary", "failing_op"]
