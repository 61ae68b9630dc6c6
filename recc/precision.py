"""The reduced-precision steps of a compile (recc.api.compile_graph): before the build, `auto` chooses the
layers the accuracy bound allows (on the interpreter, which runs the int8/bf16 semantics exactly); after
it, the artifact's own outputs on held-out inputs are compared with fp32 and `max_error` enforced."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from recc.compiler.accuracy import (
    DEFAULT_MAX_ERROR,
    PrecisionConfig,
    PrecisionError,
    attribute,
    choose_layers,
    errors,
    reduced_layers,
)
from recc.compiler.calibration import activation_modes, calibrate
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph
from recc.runtime.compiled_model import CompiledModel


def choose_precision(graph: Graph, fp32_graph: Graph | None, config: PrecisionConfig,
                     held_out: list[np.ndarray] | None, say: Callable[[str], None],
                     calibration: list[np.ndarray] | None = None) -> dict[str, Any]:
    """The precision section of the report; with `config.calibrate`, the int8 layers' activation params
    are calibrated on `calibration` first; for `auto`, layers beyond the bound then go back to fp32."""
    if fp32_graph is None:
        return {"requested": "fp32", "layers": {}}
    kept: list[str] = []
    section: dict[str, Any] = {}
    if config.calibrate:
        if calibration is None:
            raise ValueError("calibrate=N needs calibration inputs (compile from PyTorch, or pass calibration=)")
        section["calibration"] = calibrate(graph, calibration)
        say(f"calibrated {len(section['calibration']['layers'])} int8 layer(s)' activations on "
            f"{section['calibration']['rows']} rows")
    if config.precision == "auto":
        if held_out is None:
            raise ValueError("precision='auto' needs inputs to measure on (compile from PyTorch, or pass held_out=)")
        bound = config.max_error if config.max_error is not None else DEFAULT_MAX_ERROR
        kept = choose_layers(graph, held_out, interpret(fp32_graph, held_out), bound, say)
    layers = {n.inputs[1].name: n.attrs["precision"] for n in reduced_layers(graph)}
    tables = {n.inputs[0].name: n.attrs["table_precision"] for n in graph.nodes
              if n.op == "batched_embedding_bag" and n.attrs.get("table_precision", "fp32") != "fp32"}
    say(f"precision {config.precision}: {len(layers)} layer(s) reduced" + (f", {len(kept)} kept fp32 by auto" if kept else "")
        + "".join(f"; tables {name}: {fmt}" for name, fmt in tables.items()))
    rows = section["calibration"]["rows"] if "calibration" in section else None
    return {"requested": config.precision, "layers": layers, "tables": tables, "auto_kept_fp32": kept,
            "max_error": config.max_error, "activations": activation_modes(graph, rows), **section}


def _numpy(outputs: Any) -> list[np.ndarray]:
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outputs]


def measure_precision(compiled: CompiledModel, fp32_graph: Graph, graph: Graph, config: PrecisionConfig,
                      held_out: list[np.ndarray], say: Callable[[str], None]) -> dict[str, Any]:
    """The artifact's error against fp32 on `held_out` (one query: all rows); raises PrecisionError past
    `max_error`, naming the layer that contributes most."""
    reference = interpret(fp32_graph, held_out)
    measured = errors(reference, _numpy(compiled(*held_out)), len(held_out[0]))
    say(f"accuracy vs fp32 on {len(held_out[0])} held-out rows: max abs {measured['max_abs']:.3g}, "
        f"mean abs {measured['mean_abs']:.3g}, top-{measured['top_k']} agreement {measured['top_k_agreement']:.3f}")
    measured["rows"] = len(held_out[0])
    if reduced_layers(graph):
        measured["per_layer_max_abs"] = dict(attribute(graph, held_out, reference))
    if config.max_error is not None and measured["max_abs"] > config.max_error:
        worst = next(iter(measured.get("per_layer_max_abs", {})), "?")
        raise PrecisionError(
            f"precision {config.precision}: max abs error {measured['max_abs']:.3g} vs fp32 exceeds --max-error "
            f"{config.max_error:g}; the layer contributing most is {worst} (keep it fp32 with --keep-fp32 {worst}, "
            "or use --precision auto)")
    return {"accuracy": measured}
