"""Summarize a fuzz log (one JSON line per case, written by tests/fuzz with RECC_FUZZ_LOG) as the fuzz
report in bench/results/fuzz/: counts per test, damage and outcome, with the machine, the git commit and
the command that produced the log.

    RECC_FUZZ_EXAMPLES=1000 RECC_FUZZ_LOG=/tmp/fuzz.jsonl python -m pytest tests/fuzz -p no:randomly
    python -m recc.bench.fuzz_report --log /tmp/fuzz.jsonl --out bench/results/fuzz --name artifacts \
        --command "RECC_FUZZ_EXAMPLES=1000 ... python -m pytest tests/fuzz"
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from recc.bench.machine import describe_machine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--command", required=True, help="the command that wrote the log")
    p.add_argument("--note", default="", help="a paragraph on what the outcomes mean")
    p.add_argument("--column", default="damage", help="what the log's `damage` field names (e.g. feature)")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    counts = collections.Counter((r["test"], r["damage"], r["outcome"]) for r in rows)
    machine = describe_machine()
    result = {"cases": len(rows), "counts": [{"test": t, "damage": d, "outcome": o, "cases": n}
                                             for (t, d, o), n in sorted(counts.items())],
              "command": args.command, "machine": machine}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Fuzz report: {args.name}", "", f"Command: `{args.command}`", "",
             f"Commit {machine.get('git_commit')}, CPU {machine.get('cpu_model')}; {len(rows)} cases.", "",
             f"| test | {args.column} | outcome | cases |", "|---|---|---|---|"]
    lines += [f"| {t} | {d} | {o} | {n} |" for (t, d, o), n in sorted(counts.items())]
    lines += ["", "Every case ended as its fuzzer demands (a failing case fails the test run)."]
    if args.note:
        lines += ["", args.note]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / args.name}.md and .json ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
