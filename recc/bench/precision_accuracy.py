"""Accuracy of reduced precision on many queries: recc int8 / auto / bf16 (and PyTorch's dynamic int8 for
reference) against eager fp32, over Q queries of C candidates (a query = one batch of C rows from the
model's own input generator, seeds 1..Q): max and mean abs difference of the outputs, and the mean
agreement of the top-10 candidates of each query.

    python -m recc.bench.precision_accuracy --models dlrm-rmc3,wnd --queries 1000 --candidates 256 --out DIR

Writes DIR/accuracy.json and DIR/accuracy.md (the command, the git commit, the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import recc
from recc.bench.machine import describe_machine
from recc.bench.reduced import TorchDynamicInt8
from recc.compiler.accuracy import errors
from recc.models import create


def _first(output: Any) -> np.ndarray:
    output = output[0] if isinstance(output, (list, tuple)) else output
    return torch.as_tensor(output).detach().float().numpy().reshape(len(output), -1)


def systems(model: torch.nn.Module) -> dict[str, Callable[..., Any]]:
    examples = model.example_inputs(4, seed=0)
    out: dict[str, Callable[..., Any]] = {}
    for precision in ("int8", "auto", "bf16"):
        out[f"recc-{precision}"] = recc.compile(model, examples, tuning_db=None, precision=precision)
    torch_int8 = TorchDynamicInt8("x86")
    torch_int8.setup(model, 1)
    out["torch-int8-x86"] = torch_int8.model
    return out


def measure(name: str, queries: int, candidates: int) -> dict[str, Any]:
    model = create(name, scale=0.01, seed=0)
    runs = systems(model)
    reference, got = [], {k: [] for k in runs}
    with torch.inference_mode():
        for q in range(1, queries + 1):
            inputs = model.example_inputs(candidates, seed=q)
            reference.append(_first(model(*inputs)))
            for key, run in runs.items():
                got[key].append(_first(run(*inputs)))
    ref = np.concatenate(reference)
    return {key: errors([ref], [np.concatenate(rows)], candidates) for key, rows in got.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="dlrm-rmc1,dlrm-rmc2,dlrm-rmc3,wnd,mt-wnd")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {name: measure(name, args.queries, args.candidates) for name in args.models.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m recc.bench.precision_accuracy " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {"command": command, "machine": describe_machine(), "queries": args.queries,
              "candidates": args.candidates, "results": results}
    (args.out / "accuracy.json").write_text(json.dumps(record, indent=2))
    lines = [f"# Reduced precision vs eager fp32: {args.queries} queries x {args.candidates} candidates",
             "", f"Command: `{command}`", f"CPU: {record['machine'].get('cpu_model')}, commit "
             f"{record['machine'].get('git_commit')}", "",
             "| model | system | max abs | mean abs | top-10 agreement |", "|---|---|---:|---:|---:|"]
    for name, by_system in results.items():
        for key, e in by_system.items():
            lines.append(f"| {name} | {key} | {e['max_abs']:.2e} | {e['mean_abs']:.2e} | {e['top_k_agreement']:.3f} |")
    (args.out / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
