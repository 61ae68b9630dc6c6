"""Build a lowered Relax module into a shared library for a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from recc.compiler.artifact import IdLimit
from recc.compiler.ir import Graph
from recc.compiler.codegen.tvm.kernels.cpu.dense import register_tile
from recc.compiler.codegen.tvm.lowering.driver import Lowered, batch_one_bucket, lower
from recc.compiler.codegen.tvm.target import TargetSpec

EXEC_MODE = "compiled"


def lower_for_target(graph: Graph, target: TargetSpec, tuner: Any = None,
                     id_limits: dict[str, tuple[IdLimit, ...]] | None = None) -> Lowered:
    """The lowered module build_library compiles: "main" for any batch and, where the batch is the only
    shape symbol, "main_b1" (batch 1, static shapes); dense tiles for the target's ISA."""
    if tuner is not None:
        tuner.target = target.to_tvm()
        tuner.start()
    return lower(graph, tuner, id_limits, batch_one_bucket(graph), register_tile(target.to_tvm()), target)


def build_library(graph: Graph, target: TargetSpec, out_path: Path, tuner: Any = None,
                  id_limits: dict[str, tuple[IdLimit, ...]] | None = None) -> Lowered:
    """Lower `graph` (kernel schedules from `tuner`, a tuning.Tuner, if given; `id_limits` range-checked in
    the function), compile it for `target` and write the library to `out_path` (a .so)."""
    lowered = lower_for_target(graph, target, tuner, id_limits)
    with tvm.transform.PassContext(opt_level=3):
        executable = relax.build(lowered.module, target=target.to_tvm(), exec_mode=EXEC_MODE)
    executable.export_library(str(out_path))
    return lowered
