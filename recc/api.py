"""The Python API: `recc.compile(module, example_inputs)` -> CompiledModel, and `recc.load(path)`."""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from recc.compiler.accuracy import PrecisionConfig, synthetic_inputs
from recc.compiler.artifact import Manifest, TargetInfo, TensorSpec, write_manifest, write_weights
from recc.compiler.calibration import CALIBRATION_SEED
from recc.compiler.codegen.tvm import build_library, resolve_target
from recc.compiler.codegen.tvm.lowering.dense import bf16_kernel, int8_kernel
from recc.compiler.host import last_level_cache_bytes
from recc.compiler.codegen.tvm.target import isa_features
from recc.compiler.codegen.tvm.tuning import Tuner, TuningDatabase, default_database_path
from recc.compiler.input_checks import id_checks
from recc.compiler.ir.serialize import graph_to_json
from recc.compiler.ir import Graph, print_graph
from recc.compiler.pass_manager import PassContext, run_pipeline
from recc.passes.pipeline import DEFAULT_PIPELINE, build_passes
from recc.frontends.torch_export import capture
from recc.frontends.torch_export.dynamic import as_inputs, leaves
from recc.precision import choose_precision, measure_precision
from recc.runtime.compiled_model import CompiledModel, load


DEFAULT_TUNING_DB = default_database_path()


def _versions() -> dict[str, str]:
    import tvm

    from recc import __version__

    return {"recc": __version__, "tvm": tvm.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def optimize(graph: Graph, pipeline: Sequence[str] = DEFAULT_PIPELINE, disable_passes: Sequence[str] = (),
             validate_inputs: list[np.ndarray] | None = None, dump_ir: str | Path | None = None,
             progress: Callable[[str], None] | None = None,
             options: tuple[tuple[str, Any], ...] = ()) -> list[Any]:
    """Run the pass pipeline on `graph` in place; returns the per-pass reports. `options` reach every
    pass (PassContext.option), e.g. ("precision", "int8")."""
    known = set(pipeline)
    unknown = [p for p in disable_passes if p not in known]
    if unknown:
        raise ValueError(f"--disable-pass: no pass named {unknown} in the pipeline {list(pipeline)}")
    ctx = PassContext(disabled=frozenset(disable_passes), options=options)
    return run_pipeline(graph, build_passes(pipeline), ctx, validate_inputs=validate_inputs,
                        dump_dir=Path(dump_dir) if (dump_dir := dump_ir) else None, progress=progress)


def compile_graph(graph: Graph, name: str, target: str = "cpu", pipeline: Sequence[str] = DEFAULT_PIPELINE,
                  disable_passes: Sequence[str] = (), validate_inputs: list[np.ndarray] | None = None,
                  dump_ir: str | Path | None = None, threads: int | None = None,
                  progress: Callable[[str], None] | None = None, timings: dict[str, float] | None = None,
                  source: dict[str, Any] | None = None, tune_budget_s: float | None = None,
                  tuning_db: str | Path | None = DEFAULT_TUNING_DB,
                  signing_key: bytes | str | None = None, precision: PrecisionConfig = PrecisionConfig(),
                  held_out: list[np.ndarray] | None = None,
                  calibration: list[np.ndarray] | None = None) -> CompiledModel:
    """Optimize and build an IR graph into a CompiledModel (backed by a temporary artifact).

    `precision` (accuracy.PrecisionConfig): reduced-precision layers; their error against fp32 is
    measured on `held_out` inputs (none: not measured; `auto` and `max_error` need them) and reported;
    `precision.calibrate` quantizes int8 activations statically, calibrated on `calibration` inputs.

    Kernel schedules come from the tuning database `tuning_db` (None: no database) where it has them;
    with `tune_budget_s`, kernels it lacks are tuned now on this machine, within that many seconds, and
    remembered there. `signing_key` signs the artifact's manifest (HMAC-SHA256; `recc.load(path, key=)`
    then refuses anything not signed with it)."""
    say = progress or (lambda msg: None)
    timings = dict(timings or {})
    spec = resolve_target(target)
    checks = id_checks(graph)  # on the graph as captured: the function's domain, whatever the passes fuse
    start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="recc-")
    root = Path(tmp.name) / f"{name}.recc"
    graph.spill_dir = Path(tmp.name) / "spill"  # large parameters passes build go to files (ir/spill.py)
    fp32_graph = graph.clone() if precision.reduced else None
    reports = optimize(graph, pipeline, disable_passes, validate_inputs, dump_ir, progress,
                       precision.pass_options(int8_kernel(spec), bf16_kernel(spec), last_level_cache_bytes()))
    precision_report = choose_precision(graph, fp32_graph, precision, held_out, say, calibration)
    timings["passes_s"] = time.perf_counter() - start
    root.mkdir()
    say(f"building for {spec.kind} (mcpu={spec.mcpu}) ...")
    start = time.perf_counter()
    tuner = Tuner(TuningDatabase.load(Path(tuning_db) if tuning_db else None), spec.mcpu, tune_budget_s,
                  log=say)
    lowered = build_library(graph, spec, root / "lib.so", tuner, checks.ids)
    timings["build_s"] = time.perf_counter() - start
    say(f"built in {timings['build_s']:.1f} s; writing weights ...")
    key = signing_key.encode() if isinstance(signing_key, str) else signing_key
    weights = write_weights(root, [(name, lowered.weights[name]) for name in lowered.weight_names], graph.spilled)
    shutil.rmtree(graph.spill_dir, ignore_errors=True)  # what the artifact uses is linked into it
    (root / "graph.txt").write_text(print_graph(graph, origins=True))
    (root / "graph.json").write_text(json.dumps(graph_to_json(graph)))
    report = {"model": name, "passes": [r.to_json() for r in reports], "final_ops": graph.op_histogram(),
              "kernels": lowered.kernels, "timings_s": {k: round(v, 3) for k, v in timings.items()},
              "tuning": {"database": str(tuning_db) if tuning_db else None, "budget_s": tune_budget_s,
                         "reused": tuner.reused, "tuned": tuner.tuned},
              "unchecked_ids": list(checks.unchecked), "precision": precision_report}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    manifest = write_manifest(root, Manifest(
        model=name,
        inputs=tuple(TensorSpec(v.name, v.type.dtype, v.type.shape) for v in graph.inputs),
        outputs=tuple(TensorSpec(v.name, v.type.dtype, v.type.shape) for v in graph.outputs),
        target=TargetInfo(spec.kind, spec.mcpu, spec.num_cores, spec.arch, isa_features(spec)),
        weights=weights,
        id_checks=replace(checks, in_kernel=tuple(lowered.checked_inputs)),
        pipeline=tuple(p for p in pipeline if p not in disable_passes),
        versions=_versions(),
        source=source or {"kind": "python"},
        specialized=lowered.specialized,
    ), signing_key=key)
    if fp32_graph is not None and held_out is not None:  # measured on the artifact itself, then recorded
        report["precision"].update(measure_precision(CompiledModel(root, threads=threads, key=signing_key),
                                                     fp32_graph, graph, precision, held_out, say))
        (root / "report.json").write_text(json.dumps(report, indent=2))
        write_manifest(root, manifest, signing_key=key)
    # the files were hashed as they were written, just now: not read back again to check them
    return CompiledModel(root, threads=threads, check_hashes=False, key=signing_key, _owned_tmp=tmp)


def compile(module: torch.nn.Module | str | Path | Any, example_inputs: Sequence[Any] | None = None,
            target: str = "cpu", *,
            name: str | None = None, input_names: Sequence[str] | None = None,
            pipeline: Sequence[str] = DEFAULT_PIPELINE, disable_passes: Sequence[str] = (), verify: bool = False,
            dump_ir: str | Path | None = None, threads: int | None = None,
            progress: Callable[[str], None] | None = None, source: dict[str, Any] | None = None,
            tune_budget_s: float | None = None, tuning_db: str | Path | None = DEFAULT_TUNING_DB,
            signing_key: bytes | str | None = None, precision: str = "fp32", keep_fp32: Sequence[str] = (),
            max_error: float | None = None, dynamic_shapes: Any = None,
            calibrate: int | None = None) -> CompiledModel:
    """Compile a PyTorch module (or an ONNX model: a .onnx path, bytes or a ModelProto) for `target`.

    `example_inputs` (tensors, or lists/tuples of tensors as `forward` takes them) fix dtypes and static
    dims. `dynamic_shapes` is torch.export's spec (`torch.export.Dim`s per input, a tuple or a dict by
    parameter name); without it recc infers the dims that follow the batch (dim 0, offsets [tables, B],
    flat id lists [B * pooling]; see recc.frontends.torch_export.dynamic), so one compiled model serves
    every batch size. The artifact's input signature names every symbolic dim and the runtime checks it. `verify=True` runs the reference interpreter after every pass
    on the example inputs and stops at the first pass that changes the function. `tune_budget_s` tunes
    kernel schedules on this machine within that many seconds (see compile_graph; `tuning_db`).
    `signing_key` signs the artifact (see compile_graph). `precision` "int8" runs dense layers in int8
    (AMX, AVX512-VNNI or AVX2 kernels, by the target's features), "bf16" in bf16 (AMX-BF16, else bf16
    weights with fp32 math),
    "auto" in int8 for each layer the
    accuracy bound `max_error` (default 1e-2 max abs difference vs fp32) allows; `keep_fp32` names
    layers to leave fp32. The error vs fp32 is measured on held-out synthetic inputs and reported.
    `calibrate=N` (int8, auto) quantizes int8 activations statically: one scale and zero point per layer
    from the range of its input on N calibration rows (drawn like the held-out rows, another seed;
    recc.compiler.calibration), instead of per row on every call.
    """
    config = PrecisionConfig(precision, tuple(keep_fp32), max_error, calibrate)
    say = progress or (lambda msg: None)
    if not isinstance(module, torch.nn.Module):
        if config.calibrate and example_inputs is None:
            raise ValueError("calibrate=N draws calibration rows like the example inputs, which an ONNX model "
                             "does not carry: pass example_inputs with it (or quantize activations per row)")
        graph = _onnx_graph(module, example_inputs, dynamic_shapes, say)
        validate = [np.asarray(x) for x in example_inputs] if verify and example_inputs is not None else None
        held = [np.asarray(x) for x in example_inputs] if config.reduced and example_inputs is not None else None
        if config.reduced and held is None and (precision == "auto" or max_error is not None):
            raise ValueError("precision='auto' and max_error measure on example inputs: pass example_inputs "
                             "with the ONNX model")
        calibration = synthetic_inputs(held, config.calibrate, CALIBRATION_SEED) if config.calibrate else None
        return compile_graph(graph, name or graph.name, target, pipeline, disable_passes, validate, dump_ir,
                             threads, progress, None, source or {"kind": "onnx"}, tune_budget_s, tuning_db,
                             signing_key, config, held, calibration)
    if example_inputs is None:
        raise ValueError("compiling a PyTorch module needs example_inputs")
    tensors = leaves(as_inputs(example_inputs))
    names = input_names or getattr(module, "input_names", None)
    start = time.perf_counter()
    say(f"capturing {type(module).__name__} with torch.export ...")
    graph = capture(module, example_inputs, input_names=names, dynamic_shapes=dynamic_shapes)
    capture_s = time.perf_counter() - start
    signature = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    say(f"captured {len(graph.nodes)} nodes in {capture_s:.1f} s; inputs ({signature})")
    validate = [t.numpy() for t in tensors] if verify else None
    return compile_graph(graph, name or type(module).__name__, target, pipeline, disable_passes, validate, dump_ir,
                         threads, progress, {"capture_s": capture_s}, source, tune_budget_s, tuning_db,
                         signing_key, config, held_out_inputs(module, tensors) if config.reduced else None,
                         held_out_inputs(module, tensors, config.calibrate, CALIBRATION_SEED)
                         if config.calibrate else None)


def _onnx_graph(model: Any, example_inputs: Sequence[Any] | None, dynamic_shapes: Any,
                say: Callable[[str], None]) -> Graph:
    """An ONNX model (path, bytes, ModelProto) as IR; `dynamic_shapes` may name the batch dim_param."""
    from recc.frontends.onnx import import_onnx

    if not isinstance(model, (str, Path, bytes)) and type(model).__name__ != "ModelProto":
        raise TypeError(f"recc.compile takes a torch.nn.Module or an ONNX model (path, bytes, ModelProto), "
                        f"got {type(model).__name__}")
    if dynamic_shapes is not None and not isinstance(dynamic_shapes, str):
        raise ValueError("for an ONNX model, dynamic dims are the model's own dim_params; dynamic_shapes may "
                         "only name the one that is the batch (a string)")
    say(f"importing {model if isinstance(model, (str, Path)) else 'ONNX model'}")
    graph = import_onnx(model, batch_dim=dynamic_shapes)
    say(f"imported {len(graph.nodes)} nodes, inputs ({', '.join(f'{v.name}: {v.type}' for v in graph.inputs)})")
    return graph


def held_out_inputs(module: torch.nn.Module, examples: list[torch.Tensor], batch: int = 256,
                    seed: int = 20261202) -> list[np.ndarray]:
    """Inputs to measure reduced precision on: a built-in model's own generator with an unseen seed, else
    rows like the examples' (accuracy.synthetic_inputs)."""
    make = getattr(module, "example_inputs", None)
    if callable(make):
        try:
            return [torch.as_tensor(x).numpy() for x in make(batch, seed=seed)]
        except TypeError:
            pass
    return synthetic_inputs([t.numpy() for t in examples], batch, seed)


__all__ = ["compile", "compile_graph", "optimize", "load", "CompiledModel"]
