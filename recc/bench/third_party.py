"""Third-party CTR models through `recc.compile`, unmodified: does each compile, and does one artifact equal
eager PyTorch at two batch sizes other than the example's?

    pip install --no-deps --target /tmp/ctr deepctr-torch==0.3.0 torch-rechub==0.9.0
    pip install --target /tmp/ctr tqdm scikit-learn pandas      # imported at module load by those libraries
    python -m recc.bench.third_party --site /tmp/ctr --out bench/results/third_party

Each model is compiled once from batch-4 example inputs with recc's inferred dynamic dims (no
`dynamic_shapes`), then run at batches 3 and 64 on fresh seeded inputs (a second seed for the values).
Tolerance: max |recc - eager| <= 1e-5 + 1e-4 * |eager|. Status per model: passed, wrong (the error), refused
(recc's clear error, first line) or crashed (any other exception). No speed is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from recc.bench.machine import describe_machine

BATCHES = (3, 64)  # not 1: some libraries' own forward fails at batch 1 (DeepCTR's DCNMix squeezes it away)
REFUSALS = ("UnsupportedOpError", "ValueError", "NotImplementedError", "IRTypeError", "OnnxImportError",
            "UncheckedGatherError", "ConversionError", "SymbolicShapeError")


def _outputs(x: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(x) if isinstance(t, torch.Tensor)]


def check_model(name: str, build: Any) -> dict[str, Any]:
    import recc

    row: dict[str, Any] = {"model": name}
    try:
        module, make = build()
    except Exception as e:  # noqa: BLE001 - a library we could not build is reported, not a recc result
        return {**row, "status": "not built", "reason": f"{type(e).__name__}: {e}".splitlines()[0]}
    start = time.perf_counter()
    try:
        compiled = recc.compile(module, make(4, 0))
        row["compile_s"] = round(time.perf_counter() - start, 2)
        row["inputs"] = [f"{name}: {dtype}{shape}" for name, dtype, shape in compiled.inputs]
        errors = []
        for batch in BATCHES:
            inputs = make(batch, 100 + batch)
            try:
                with torch.no_grad():
                    want = _outputs(module(*inputs))
            except Exception as e:  # noqa: BLE001 - the library's own bug, not recc's
                return {**row, "status": "eager fails", "reason": f"batch {batch}: {type(e).__name__}: {e}"}
            got = _outputs(compiled(*inputs))
            if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
                return {**row, "status": "wrong", "reason": f"batch {batch}: output shapes "
                        f"{[tuple(g.shape) for g in got]} vs eager {[tuple(w.shape) for w in want]}"}
            err = max(float(((g - w).abs() - 1e-4 * w.abs()).max()) for g, w in zip(got, want))
            errors.append(max(float((g - w).abs().max()) for g, w in zip(got, want)))
            if not err <= 1e-5:
                return {**row, "status": "wrong", "reason": f"batch {batch}: max abs error {errors[-1]:.3g}"}
        return {**row, "status": "passed", "max_abs_error": max(errors)}
    except Exception as e:  # noqa: BLE001 - classified below
        kind = type(e).__name__
        status = "refused" if kind in REFUSALS else "crashed"
        detail = traceback.format_exc(limit=-3) if status == "crashed" else ""
        return {**row, "status": status, "reason": f"{kind}: {str(e).splitlines()[0][:400]}", "trace": detail}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = ["# Third-party CTR models through recc.compile", "",
             f"Commit {m['git_commit']}, CPU {m['cpu_model']}, torch {m['versions']['torch']}; "
             f"libraries: {', '.join(f'{k} {v}' for k, v in result['libraries'].items())}.",
             f"Command: `{result['command']}`", "",
             "Compiled once from batch-4 examples (inferred dynamic dims), checked against eager at batches "
             f"{', '.join(map(str, BATCHES))} (|recc - eager| <= 1e-5 + 1e-4 |eager|).", "",
             f"**{result['summary']['passed']} of {result['summary']['total']} pass.**", "",
             "| model | status | detail |", "|---|---|---|"]
    for row in result["rows"]:
        detail = row.get("reason") or f"max abs error {row.get('max_abs_error', 0):.2g}, compile {row['compile_s']} s"
        lines.append(f"| {row['model']} | {row['status']} | {detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", help="directories the libraries were pip-installed into (--target), ':'-separated")
    parser.add_argument("--out", default="bench/results/third_party", help="results directory")
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    args = parser.parse_args(argv)
    for site in reversed((args.site or "").split(os.pathsep)):
        if site:
            sys.path.insert(0, site)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from recc.bench.third_party_models import MODELS

    rows = []
    for name, build in MODELS.items():
        if args.only and name not in args.only:
            continue
        row = check_model(name, build)
        print(f"{name:24s} {row['status']:8s} {row.get('reason', '')[:150]}", flush=True)
        rows.append(row)
    libraries = {}
    for dist in ("deepctr-torch", "torch-rechub"):
        try:
            from importlib.metadata import version
            libraries[dist] = version(dist)
        except Exception:  # noqa: BLE001
            libraries[dist] = "not installed"
    counted = [r for r in rows if r["status"] not in ("not built", "eager fails")]
    result = {"command": " ".join(["python -m recc.bench.third_party", *(argv or sys.argv[1:])]),
              "machine": describe_machine(), "threads": 1, "libraries": libraries, "batches": BATCHES, "rows": rows,
              "summary": {"total": len(counted), "passed": sum(r["status"] == "passed" for r in counted),
                          **{s: sum(r["status"] == s for r in rows) for s in ("wrong", "refused", "crashed",
                                                                             "not built", "eager fails")}}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "third_party_ctr.json").write_text(json.dumps(result, indent=2))
    (out / "third_party_ctr.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
