"""The dense + bias + activation spellings of tests/passes/test_dense_variants.py through recc's pipeline
and through ONNX Runtime's optimizer, side by side: does each end as one fused node per layer?

    python -m recc.bench.dense_variants_ort --out bench/results/dense_variants.md   (from the repo root)

recc: captured with torch.export, the default pipeline, `final_ops` must be exactly one `dense` per layer.
ORT: exported with torch.onnx.export (opset 17, dynamic batch), loaded with ORT_ENABLE_ALL and
`optimized_model_filepath`; fused when the optimized graph holds exactly one node per layer and each is
a Gemm / MatMul with the activation inside (FusedGemm, or a contrib fused op). Both systems' outputs are
checked against eager on the same input (max abs error in the table).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from recc.compiler.interpreter import interpret
from recc.frontends.torch_export import capture

from recc.api import optimize

FUSED_ORT_OPS = {"FusedGemm", "FusedConv", "QGemm"}  # a GEMM with bias and activation in one node


def _ort_optimized(module: torch.nn.Module, x: torch.Tensor, workdir: Path) -> tuple[list[str], np.ndarray]:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(workdir / "optimized.onnx")
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    optimized = onnx.load(str(workdir / "optimized.onnx"))
    return [node.op_type for node in optimized.graph.node], y


def _recc_final(module: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, int], list[str], np.ndarray]:
    graph = capture(module, (x,))
    optimize(graph)
    activations = [n.attrs.get("activation", "") for n in graph.nodes if n.op == "dense"]
    return graph.op_histogram(), activations, interpret(graph, [x.numpy()])[0]


def _histogram(ops: dict[str, int] | list[str]) -> str:
    counts = ops if isinstance(ops, dict) else Counter(ops)
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))


def run() -> list[dict[str, object]]:
    from tests.passes.test_dense_variants import SPELLINGS, _inputs, build

    rows = []
    for name, (_, layers, _) in SPELLINGS.items():
        module = build(name)
        x = _inputs(name, 5, 7)
        with torch.no_grad():
            expected = module(x).numpy()
        recc_ops, activations, recc_y = _recc_final(module, x)
        with tempfile.TemporaryDirectory() as tmp:
            ort_ops, ort_y = _ort_optimized(module, x, Path(tmp))
        compute = [op for op in ort_ops if op not in ("Constant", "Identity")]
        rows.append({
            "spelling": name, "layers": layers,
            "recc_fused": recc_ops == {"dense": layers}, "recc_ops": _histogram(recc_ops),
            "recc_activations": ",".join(activations), "recc_err": float(np.max(np.abs(recc_y - expected))),
            "ort_fused": len(compute) == layers and set(compute) <= FUSED_ORT_OPS, "ort_ops": _histogram(compute),
            "ort_err": float(np.max(np.abs(ort_y - expected))),
        })
    return rows


def to_markdown(rows: list[dict[str, object]], command: str) -> str:
    def yes(fused: object) -> str:
        return "**yes**" if fused else "no"

    lines = [
        "# Dense + bias + activation spellings: recc vs ONNX Runtime's optimizer", "",
        f"Command: `{command}` (torch {torch.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}).",
        "",
        ("Fused = the optimized graph is exactly one node per layer with bias and activation inside (recc: `dense` "
        "with an `activation`; ORT: `FusedGemm`). Errors: max abs vs eager on one batch-5 input. ORT sees the "
        "model as torch.onnx.export (the TorchScript exporter, dynamo=False) wrote it: the exporter already "
        "turns some spellings into Gemm / Relu (addmm, x @ W.T + b, threshold) before ORT's optimizer runs."),
        "",
        "| spelling | layers | recc fused? | recc final ops (activations) | recc err | ORT fused? | what ORT left | ORT err |",
        "|---|---:|---|---|---:|---|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['spelling']} | {r['layers']} | {yes(r['recc_fused'])} | {r['recc_ops']} "
                     f"({r['recc_activations']}) | {r['recc_err']:.1e} | {yes(r['ort_fused'])} | {r['ort_ops']} | "
                     f"{r['ort_err']:.1e} |")
    recc_n = sum(bool(r["recc_fused"]) for r in rows)
    ort_n = sum(bool(r["ort_fused"]) for r in rows)
    lines += ["", f"**Fused: recc {recc_n} / {len(rows)}, ONNX Runtime {ort_n} / {len(rows)}.**", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    command = "python -m recc.bench.dense_variants_ort" + (f" --out {args.out}" if args.out else "")
    text = to_markdown(run(), command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
