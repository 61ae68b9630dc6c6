"""The OpInfo conformance results as JSON and a Markdown report: the summary per dtype, then every failure
grouped by reason (unsupported ATen ops first, with how many ops each blocks), then what was left out."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any

from recc.bench.opinfo_cases import ATOL, EVALUATED, NOT_CORE, PRECEDENCE, RTOL

UNSUPPORTED = re.compile(r"^unsupported op (\S+);")


def summarize(records: list[dict[str, Any]], dtypes: list[str]) -> dict[str, dict[str, Any]]:
    """Per dtype and over all: op variants per status, the exportable ones (EVALUATED) and the pass rate."""
    summary = {}
    for dtype in [*dtypes, "all"]:
        counts = collections.Counter(r["status"] for r in records if dtype in ("all", r["dtype"]))
        exportable = sum(counts[s] for s in EVALUATED)
        summary[dtype] = {"op_variants": sum(counts.values()), "exportable": exportable,
                          **{s: counts[s] for s in PRECEDENCE},
                          "pass_rate": round(counts["passed"] / exportable, 4) if exportable else None,
                          "beyond_core": dict(collections.Counter(
                              r["beyond_core"] for r in records if dtype in ("all", r["dtype"]) and "beyond_core" in r))}
    return summary


def unsupported_ops(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{ATen op recc does not convert: ['opinfo dtype', ...]} over every refused sample."""
    blocked: dict[str, set[str]] = collections.defaultdict(set)
    for r in records:
        for s in r["samples"]:
            if s["status"] == "refused" and (m := UNSUPPORTED.match(s["reason"])):
                blocked[m.group(1)].add(f"{r['op']} {r['dtype']}")
    return {k: sorted(v) for k, v in sorted(blocked.items(), key=lambda kv: (-len(kv[1]), kv[0]))}


def _grouped(records: list[dict[str, Any]], status: str, width: int = 200) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        if r["status"] == status:
            groups[r["reason"][:width]].append(f"{r['op']} ({r['dtype']})")
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary_lines(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    lines = ["# OpInfo conformance of recc's torch frontend", "",
             f"Command: `{result['command']}`", "",
             f"Commit {m.get('git_commit')}, {result['date']}, CPU {m.get('cpu_model')}, "
             f"{result['config']['threads']} thread(s), torch {m['versions'].get('torch')}, "
             f"apache-tvm {m['versions'].get('apache-tvm')}; {result['config']['ops']} OpInfos, up to "
             f"{result['config']['samples']} samples per op and dtype, shapes "
             f"{result['config']['shapes']}; {result['elapsed_s']:.0f} s. How to read it: docs/conformance.md.",
             "", f"An op variant passes when every evaluated sample matches eager (float atol {ATOL}, rtol {RTOL}, "
             "NaN/inf where eager has them; integers and bools exact) on the sample and on a fresh seeded input. "
             "Pass rate = passed / exportable (passed + refused + wrong + crashed).", "",
             "| dtype | op variants | exportable | passed | refused | wrong | crashed | pass rate | "
             "not exportable | excluded | skipped |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for dtype, s in result["summary"].items():
        rate = f"{s['pass_rate']:.1%}" if s["pass_rate"] is not None else "-"
        lines.append(f"| {dtype} | {s['op_variants']} | {s['exportable']} | {s['passed']} | {s['refused']} | "
                     f"{s['wrong']} | {s['crashed']} | **{rate}** | {s['not exportable']} | {s['excluded']} | "
                     f"{s['skipped']} |")
    return lines


def _failure_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Wrong answers", ""]
    wrong = [r for r in records if r["status"] == "wrong"]
    lines += ["| op | dtype | on | reason | sample input shapes |", "|---|---|---|---|---|"] if wrong else ["None."]
    for r in wrong:
        s = next(s for s in r["samples"] if s["status"] == "wrong")
        on = "fresh input" if s["stage"] == "compare-fresh" else "the sample"
        lines.append(f"| {r['op']} | {r['dtype']} | {on} | {_cell(r['reason'])} | {s['shapes']} |")
    lines += ["", "## Crashes (an error that is not a deliberate refusal)", ""]
    crashed = _grouped(records, "crashed", 400)
    lines += ["| reason | op variants |", "|---|---|"] if crashed else ["None."]
    lines += [f"| {_cell(reason)} | {', '.join(ops)} |" for reason, ops in crashed]
    internal = [(reason, ops) for reason, ops in _grouped(records, "refused") if reason.startswith("internal:")]
    lines += ["", "## Refused by recc's own consistency check (a converter disagrees with torch: bugs)", ""]
    lines += ["| reason | op variants |", "|---|---|"] if internal else ["None."]
    lines += [f"| {_cell(reason)} | {', '.join(ops)} |" for reason, ops in internal]
    blocked = unsupported_ops(records)
    lines += ["", "## Unsupported ATen ops (each with the op variants a refusal of it blocks)", "",
              "| ATen op | op variants | which |", "|---|---:|---|"]
    lines += [f"| {op} | {len(which)} | {', '.join(which)} |" for op, which in blocked.items()]
    lines += ["", "## Refused (grouped by reason)", "", "| reason | op variants |", "|---|---|"]
    lines += [f"| {_cell(reason)} | {', '.join(ops)} |" for reason, ops in _grouped(records, "refused")]
    return lines


def _beyond_core_lines(records: list[dict[str, Any]]) -> list[str]:
    beyond = [r for r in records if "beyond_core" in r]
    counts = collections.Counter(r["beyond_core"] for r in beyond)
    lines = ["", "## Beyond Core ATen (not in the denominator)", "",
             "Samples that export, but leave ops torch does not tag Core ATen after its decompositions, were "
             f"compiled anyway: {', '.join(f'{n} {s}' for s, n in counts.most_common())}.", "",
             "| recc | op | dtype | ops outside Core ATen | reason |", "|---|---|---|---|---|"]
    order = {s: i for i, s in enumerate(PRECEDENCE)}
    for r in sorted(beyond, key=lambda r: (order[r["beyond_core"]], r["beyond_core_reason"], r["op"])):
        lines.append(f"| {r['beyond_core']} | {r['op']} | {r['dtype']} | {r['reason'].removeprefix('not Core ATen: ')} "
                     f"| {_cell(r['beyond_core_reason'])} |")
    return lines


def _left_out_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Not in the denominator (besides the above)", "", "| status | reason | op variants |", "|---|---|---|"]
    for status in ("not exportable", "excluded", "skipped"):
        lines += [f"| {status} | {_cell(reason)} | {', '.join(ops)} |"
                  for reason, ops in _grouped(records, status, 120) if not reason.startswith(NOT_CORE)]
    lines += ["", "## Passed", ""]
    for dtype in sorted({r["dtype"] for r in records}):
        ops = [r["op"] for r in records if r["dtype"] == dtype and r["status"] == "passed"]
        lines += [f"{dtype} ({len(ops)}): {', '.join(ops)}", ""]
    return lines


def write_report(result: dict[str, Any], out: Path, name: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    records = result["ops"]
    md_path.write_text("\n".join(_summary_lines(result) + _failure_lines(records) + _beyond_core_lines(records)
                       + _left_out_lines(records)) + "\n")
    return json_path, md_path
