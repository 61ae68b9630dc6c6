"""The pass manager: reports, disabled passes, IR dumps, and translation validation catching a pass
that changes the function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from recc.api import optimize
from recc.compiler.ir import Graph
from recc.compiler.pass_manager import (PassContext, PassStats, TranslationValidationError, run_pipeline)
from recc.passes.pipeline import build_passes
from recc.frontends.torch_export import capture


def mlp_graph() -> Graph:
    torch.manual_seed(0)
    return capture(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Sigmoid()), (torch.randn(3, 4),))


class BreakBias:
    """A deliberately wrong pass: drops the bias of every dense layer."""

    name = "break-bias"
    summary = "wrong on purpose"

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        stats = PassStats()
        for node in graph.nodes:
            if node.op == "dense" and len(node.inputs) == 3:
                node.inputs[2].users.remove(node)
                node.inputs = node.inputs[:2]
                stats.rewrote("drop-bias")
        return stats


def test_reports_have_counts_histograms_and_times() -> None:
    graph = mlp_graph()
    reports = optimize(graph)
    fuse = next(r for r in reports if r.name == "fuse-dense-activation")
    assert fuse.rewrites == {"activation-into-dense": 2}
    assert fuse.ops_before == {"dense": 2, "relu": 1, "sigmoid": 1} and fuse.ops_after == {"dense": 2}
    assert fuse.nodes_before == 4 and fuse.nodes_after == 2 and isinstance(fuse.ms, float)
    assert set(fuse.to_json()) >= {"name", "rewrites", "rejects", "nodes_before", "nodes_after", "ops_before",
                                   "ops_after", "ms"}


def test_disabled_pass_is_skipped_and_reported() -> None:
    graph = mlp_graph()
    reports = optimize(graph, disable_passes=["fuse-dense-activation"])
    fuse = next(r for r in reports if r.name == "fuse-dense-activation")
    assert fuse.skipped and graph.op_histogram() == {"dense": 2, "relu": 1, "sigmoid": 1}
    with pytest.raises(ValueError, match="no pass named"):
        optimize(mlp_graph(), disable_passes=["no-such-pass"])


def test_translation_validation_names_the_pass_that_changed_the_function() -> None:
    graph = mlp_graph()
    inputs = [np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)]
    passes = build_passes(["simplify-reshapes"]) + [BreakBias()] + build_passes(["eliminate-dead-nodes"])
    with pytest.raises(TranslationValidationError, match="pass break-bias changed the function"):
        run_pipeline(graph, passes, PassContext(verify_ir=False), validate_inputs=inputs)
    ok = mlp_graph()
    run_pipeline(ok, build_passes(), PassContext(), validate_inputs=inputs)  # the real pipeline passes


def test_dump_ir_writes_text_and_svg(tmp_path: Path) -> None:
    optimize(mlp_graph(), dump_ir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    fused = [name for name in files if name.endswith("-fuse-dense-activation-after.svg")]  # any pipeline position
    assert len(fused) == 1 and fused[0].replace(".svg", ".txt") in files
    svg = (tmp_path / fused[0]).read_text()
    assert svg.startswith("<svg") and "dense [relu]" in svg
