"""OpInfo conformance: PyTorch's OpInfo samples through recc, compared with eager (docs/conformance.md).

    python -m recc.bench.opinfo [--ops add,cat,...] [--limit N] [--samples 2] [--dtypes float32,int64]
                                [--threads 1] [--out bench/results/conformance] [--name opinfo]

For every OpInfo in `torch.testing._internal.common_methods_invocations.op_db` (needs `expecttest`) and
every dtype it supports on CPU among --dtypes: its first --samples usable samples, each through
recc.bench.opinfo_cases.check_sample. An op and dtype passes when all its evaluated samples pass.
Writes <out>/<name>.json (every op and dtype with its samples, the summary, machine, commit, command)
and <out>/<name>.md (recc.bench.opinfo_report).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import torch

from recc.bench.machine import describe_machine
from recc.bench.opinfo_cases import SampleResult, check_sample, is_random, op_label, op_status
from recc.bench.opinfo_report import summarize, write_report
from recc.bench.opinfo_ties import tie_comparator

DTYPES = {"float32": torch.float32, "int64": torch.int64}
MAX_SCANNED = 40  # samples looked at per op and dtype to find --samples usable ones


def op_database() -> list[Any]:
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except ImportError as e:
        raise ImportError(f"the OpInfo database needs the `expecttest` package (pip install expecttest): {e}") from e
    return list(op_db)


def select_ops(ops: Iterable[Any], names: Iterable[str] | None = None, limit: int | None = None) -> list[Any]:
    """OpInfos by label (`name` or `name.variant`; a bare name takes every variant), in op_db order."""
    chosen = list(ops)
    if names:
        wanted = set(names)
        chosen = [op for op in chosen if op_label(op) in wanted or op.name in wanted]
        found = {op_label(op) for op in chosen} | {op.name for op in chosen}
        missing = sorted(wanted - found)
        if missing:
            raise SystemExit(f"no OpInfo named {', '.join(missing)}")
    return chosen[:limit] if limit else chosen


def check_op(op: Any, dtype: torch.dtype, samples: int = 2, threads: int | None = 1) -> dict[str, Any]:
    """One op and dtype: its first `samples` samples that eager runs, each checked; the op's status."""
    label, results = op_label(op), []
    try:
        for i, sample in enumerate(op.sample_inputs("cpu", dtype, requires_grad=False)):
            if i >= MAX_SCANNED or len([r for r in results if r.status != "skipped"]) >= samples:
                break
            results.append(check_sample(op.op, sample, f"{label}/{dtype}/{i}", is_random(op), threads,
                                        ties=tie_comparator(op.name, sample)))
    except Exception as e:  # noqa: BLE001 - OpInfo's own sample generator failed: nothing to check
        results.append(SampleResult("skipped", f"sample_inputs raised {type(e).__name__}: {e}"[:300]))
    status, reason = op_status(results)
    record = {"op": label, "dtype": str(dtype).removeprefix("torch."), "status": status, "reason": reason,
              "samples": [asdict(r) for r in results]}
    beyond = [SampleResult(r.beyond_core, r.beyond_core_reason) for r in results if r.beyond_core]
    if status == "not exportable" and beyond:  # recc's verdict on what torch left outside Core ATen
        record["beyond_core"], record["beyond_core_reason"] = op_status(beyond)
    return record


def run(ops: list[Any], dtypes: list[str], samples: int, threads: int | None,
        say: Any = print) -> list[dict[str, Any]]:
    records = []
    pairs = [(op, name) for op in ops for name in dtypes if DTYPES[name] in op.supported_dtypes("cpu")]
    for n, (op, name) in enumerate(pairs, 1):
        start = time.perf_counter()
        record = check_op(op, DTYPES[name], samples, threads)
        record["seconds"] = round(time.perf_counter() - start, 2)
        records.append(record)
        reason = f": {record['reason']}" if record["reason"] else ""
        say(f"[{n}/{len(pairs)}] {record['op']} {name}: {record['status']}{reason[:160]} "
            f"({len(record['samples'])} samples, {record['seconds']:.1f} s)")
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="", help="comma-separated OpInfo names (name or name.variant); default all")
    p.add_argument("--limit", type=int, default=None, help="only the first N selected OpInfos")
    p.add_argument("--samples", type=int, default=2, help="usable samples checked per op and dtype")
    p.add_argument("--dtypes", default="float32,int64", help=f"among {', '.join(DTYPES)}")
    p.add_argument("--threads", type=int, default=1, help="threads for eager PyTorch and the compiled model")
    p.add_argument("--out", default="bench/results/conformance")
    p.add_argument("--name", default="opinfo", help="the output files' stem")
    args = p.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        p.error(f"--dtypes: unknown {unknown}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ops = select_ops(op_database(), [n for n in args.ops.split(",") if n], args.limit)
    machine = describe_machine()  # the commit measured, before anything else can move HEAD
    start = time.perf_counter()
    records = run(ops, dtypes, args.samples, args.threads, lambda line: print(line, flush=True))
    result = {
        "command": " ".join(["python -m recc.bench.opinfo", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"ops": len(ops), "dtypes": dtypes, "samples": args.samples, "threads": args.threads,
                   "shapes": "static (every sample compiled at its exact shapes)"},
        "elapsed_s": round(time.perf_counter() - start, 1),
        "machine": machine,
        "summary": summarize(records, dtypes),
        "ops": records,
    }
    json_path, md_path = write_report(result, Path(args.out), args.name)
    print(f"wrote {json_path} and {md_path} in {result['elapsed_s']:.0f} s")
    for dtype, s in result["summary"].items():
        rate = "n/a" if s["pass_rate"] is None else f"{s['pass_rate']:.1%}"  # None: nothing exportable
        print(f"{dtype}: {s['passed']}/{s['exportable']} passed ({rate}), refused {s['refused']}, "
              f"wrong {s['wrong']}, crashed {s['crashed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
