"""recc's ONNX frontend on ONNX's own node test cases, as an onnx.backend (recc.onnx_backend.RecBackend),
with ONNX Runtime run on the same cases as the anchor.

    PYTHONPATH=. python bench/conformance/onnx_node.py                 # all cases -> bench/results/conformance/
    PYTHONPATH=. python bench/conformance/onnx_node.py -k test_relu -k 'test_reduce_sum.*'   # a selection

Each case is excluded (with its category, onnx_cases.CATEGORIES), or run on recc and classified passed,
wrong (ONNX's comparison failed), refused (recc's UnsupportedOpError/OnnxImportError naming the node and
its op) or crashed (anything else, a timeout, or the worker process dying). Cases run in a worker process
that is restarted after a crash, so one segfault costs one case.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_cases  # noqa: E402
import onnx_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "bench" / "results" / "conformance"


def recc_prepare(model: Any) -> Any:
    from recc.onnx_backend import RecBackend

    return RecBackend.prepare(model, "CPU")


def run_case(case: Any, timeout_s: int, with_ort: bool = True) -> dict[str, Any]:
    """One non-excluded case on recc (and ONNX Runtime)."""
    result = onnx_cases.run_with(recc_prepare, case, timeout_s)
    if with_ort:
        ort = onnx_cases.run_with(onnx_cases.OrtRep, case, timeout_s)
        result["ort"] = ort["status"] == "passed"
        if not result["ort"]:
            result["ort_reason"] = ort.get("reason", "")
    return result


def worker(timeout_s: int, with_ort: bool) -> None:
    """Reads case names on stdin, writes one JSON line per event on stdout."""
    names = [line.strip() for line in sys.stdin if line.strip()]
    cases = onnx_cases.load_cases(set(names))
    out = sys.stdout
    for name in names:
        print(json.dumps({"start": name}), file=out, flush=True)
        result = run_case(cases[name], timeout_s, with_ort)
        print(json.dumps({"done": name, **result}), file=out, flush=True)


def _pump(stream: Any, lines: "queue.Queue[str | None]") -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_in_workers(names: list[str], timeout_s: int, with_ort: bool, say: Any) -> dict[str, dict[str, Any]]:
    """Run `names` in a worker process, restarting it past a case it died (or hung) on."""
    results: dict[str, dict[str, Any]] = {}
    todo = list(names)
    start = time.perf_counter()
    while todo:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--timeout", str(timeout_s)]
        command += [] if with_ort else ["--no-ort"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": _pythonpath()})
        proc.stdin.write("\n".join(todo) + "\n")
        proc.stdin.close()
        lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        current, before = None, len(todo)
        while True:
            try:  # loading the cases takes a few seconds; a case gets its alarm, plus a margin
                line = lines.get(timeout=timeout_s * 3 + 120)
            except queue.Empty:
                proc.kill()
                line = None
            if line is None:
                break
            event = json.loads(line)
            if "start" in event:
                current = event["start"]
                continue
            name = event.pop("done")
            results[name] = event
            todo.remove(name)
            current = None
            say(f"[{len(results)}/{len(names)} {time.perf_counter() - start:.0f}s] {name}: {event['status']}"
                + (f" ({event['reason'][:120]})" if event.get("reason") else ""))
        code = proc.wait()
        if todo and current is None and len(todo) == before:
            raise RuntimeError(f"the worker exited (code {code}) before running any case: run it by hand "
                               f"({' '.join(command)}) to see why")
        if todo:
            dead = current or todo[0]
            results[dead] = {"status": "crashed", "reason": f"the worker process died (exit code {code})",
                             "ort": None}
            todo.remove(dead)
            say(f"{dead}: worker died (exit code {code}); restarting")
    return results


def _pythonpath() -> str:
    return os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def select(all_cases: dict[str, Any], patterns: list[str]) -> list[str]:
    names = sorted(all_cases)
    if not patterns:
        return names
    return [n for n in names if any(re.fullmatch(p, n) for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="run only cases whose name matches this regex")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per case (signal.alarm)")
    parser.add_argument("--no-ort", action="store_true", help="do not run ONNX Runtime as the anchor")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.timeout, not args.no_ort)
        return 0
    started = time.perf_counter()
    cases = onnx_cases.load_cases()
    names = select(cases, args.k)
    excluded = {n: c for n in names if (c := onnx_cases.exclusion(n, cases[n].model))}
    meta = {n: {"ops": onnx_cases.case_ops(cases[n].model), "opset": onnx_cases.default_opset(cases[n].model)}
            for n in names}
    del cases
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    say(f"{len(names)} cases, {len(excluded)} excluded; running {len(names) - len(excluded)}")
    results = run_in_workers([n for n in names if n not in excluded], args.timeout, not args.no_ort, say)
    for name, category in excluded.items():
        results[name] = {"status": "excluded", "category": category}
    for name in names:
        results[name].update(meta[name])
    record = onnx_report.record(results, " ".join(["python", "bench/conformance/onnx_node.py"] + (argv or sys.argv[1:])),
                                time.perf_counter() - started, not args.no_ort)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_node.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "onnx_node.md").write_text(onnx_report.markdown(record))
    say(json.dumps(record["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "run_case", "recc_prepare", "select"]
