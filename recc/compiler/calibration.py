"""Static activation quantization (`calibrate=N`): the int8 dense layers' input ranges measured on N
calibration rows, and each layer's fixed activation scale and zero point derived from them.

The rows are drawn like the held-out accuracy inputs but with another seed (CALIBRATION_SEED), so the
accuracy the compile reports is not measured on them. The graph is run by the reference interpreter with
its dense layers in fp32 (as PyTorch's observers see an fp32 model; 8-bit tables stay as compiled), and
per int8 dense layer the range [lo, hi] of its input over all rows is recorded, 0 included (as the
dynamic rule); then xs = (hi - lo) / 255 (1 for an empty span) and zp = round(-lo / xs), the formulas of
quantize.row_params over the whole calibration set. They become the node's attrs `act_scale` and
`act_zero_point` (Python floats: the IR stays serializable), which the interpreter
(quantize.dense_int8's `act`) and the kernels (dense_int8_static) read. Non-finite values in a
calibration row are left out of the range (an inf would make the scale infinite).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recc.compiler.accuracy import reduced_layers
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, Node
from recc.compiler.quantize import range_params

CALIBRATION_SEED = 20250917  # not the held-out seed (api.held_out_inputs): accuracy is not measured on these
ACT_ATTRS = ("act_scale", "act_zero_point")


def int8_layers(graph: Graph) -> list[Node]:
    return [n for n in reduced_layers(graph) if n.attrs.get("precision") == "int8"]


def observe_ranges(graph: Graph, inputs: list[np.ndarray], layers: list[Node]) -> dict[int, tuple[float, float]]:
    """{id(node): (lo, hi)}: the range of each of `layers`' input (0 included, finite values only) with the
    graph run in fp32 on `inputs`."""
    wanted = {id(n) for n in layers}
    ranges = {key: (0.0, 0.0) for key in wanted}

    def observe(node: Node, args: list[np.ndarray]) -> None:
        if id(node) in wanted:
            x = np.asarray(args[0], np.float32)
            x = x[np.isfinite(x)]
            lo, hi = ranges[id(node)]
            if x.size:
                ranges[id(node)] = (min(lo, float(x.min())), max(hi, float(x.max())))

    saved = [(n, n.attrs["precision"]) for n in reduced_layers(graph)]
    for node, _ in saved:
        node.attrs["precision"] = "fp32"
    try:
        interpret(graph, inputs, observe)
    finally:
        for node, precision in saved:
            node.attrs["precision"] = precision
    return ranges


def calibrate(graph: Graph, inputs: list[np.ndarray]) -> dict[str, Any]:
    """Set the static activation params of every int8 dense layer of `graph` from `inputs`; returns the
    report's calibration section: rows and, per layer (by weight name), [lo, hi], scale and zero point."""
    layers = int8_layers(graph)
    ranges = observe_ranges(graph, inputs, layers)
    out: dict[str, Any] = {}
    for node in layers:
        lo, hi = ranges[id(node)]
        scale, _, zp = range_params(np.float32(lo), np.float32(hi))
        node.attrs["act_scale"], node.attrs["act_zero_point"] = float(scale), float(zp)
        out[node.inputs[1].name] = {"range": [lo, hi], "scale": float(scale), "zero_point": float(zp)}
    return {"rows": len(inputs[0]) if inputs else 0, "seed": CALIBRATION_SEED, "layers": out}


def activation_modes(graph: Graph, rows: int | None) -> dict[str, str]:
    """Per int8 dense layer (by weight name): "static (calibrated on N rows)" or "dynamic"."""
    return {n.inputs[1].name: f"static (calibrated on {rows} rows)" if "act_scale" in n.attrs and rows else "dynamic"
            for n in int8_layers(graph)}
