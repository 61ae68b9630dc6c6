"""Large flat parameters (batch-embedding-bags' table buffer) are streamed to a memory-mapped file and
linked into the artifact, never concatenated in memory (issue 20: compiling adds <= 0.3x the weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import recc
from recc.compiler.artifact import load_weight
from recc.compiler.interpreter import interpret
from recc.compiler.ir import graph as graph_module
from recc.compiler.ir.spill import stream_npy
from tests.conftest import FP32_ATOL, max_abs_error
from tests.passes.test_batch_embedding_bags import MixedTables, _batch, _captured, _inputs


def test_stream_npy_writes_the_concatenation_memory_mapped(tmp_path: Path) -> None:
    parts = [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=np.float64)]
    array = stream_npy(tmp_path / "flat.npy", parts, np.float32, 10)
    assert isinstance(array, np.memmap) and not array.flags.writeable
    np.testing.assert_array_equal(array, np.concatenate([p.reshape(-1) for p in parts]).astype(np.float32))
    assert np.load(tmp_path / "flat.npy", allow_pickle=False).shape == (10,)
    assert array.ctypes.data % 64 == 0  # the header pads the data to TVM's alignment
    with pytest.raises(ValueError, match="declared"):
        stream_npy(tmp_path / "short.npy", parts, np.float32, 11)


def test_the_batched_tables_are_spilled_when_the_graph_has_a_spill_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_module, "SPILL_BYTES", 0)
    module = MixedTables()
    graph = _captured(module)
    graph.spill_dir = tmp_path
    _batch(graph)
    batched = next(n for n in graph.nodes if n.op == "batched_embedding_bag")
    flat = graph.param_array(batched.inputs[0])
    assert isinstance(flat, np.memmap) and str(flat.filename) in graph.spilled
    inputs = _inputs(5, seed=3)
    assert max_abs_error(interpret(graph, [x.numpy() for x in inputs])[0], module(*inputs)) <= FP32_ATOL


def test_a_compiled_model_with_spilled_tables_matches_eager(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_module, "SPILL_BYTES", 0)
    module = MixedTables().eval()
    compiled = recc.compile(module, _inputs(4, 0), tuning_db=None)
    assert not (compiled.path.parent / "spill").exists()  # linked into the artifact, then removed
    saved = compiled.save(tmp_path / "m.recc")
    loaded = recc.load(saved)
    tables = [load_weight(saved, w) for w in loaded.manifest.weights if w.name.startswith("batched_tables")]
    assert len(tables) == 1
    for batch in (1, 7):
        inputs = _inputs(batch, seed=20 + batch)
        assert max_abs_error(loaded(*inputs), module(*inputs)) <= FP32_ATOL


def test_save_with_move_moves_the_temporary_artifact(tmp_path: Path) -> None:
    module = MixedTables().eval()
    compiled = recc.compile(module, _inputs(4, 0), tuning_db=None)
    temporary = compiled.path
    saved = compiled.save(tmp_path / "m.recc", move=True)
    assert compiled.path == saved and not temporary.exists()
    copy = compiled.save(tmp_path / "copy.recc", move=True)  # no longer temporary: copied
    assert saved.exists() and copy.exists() and compiled.path == saved
    inputs = _inputs(3, seed=5)
    for model in (compiled, recc.load(copy)):
        assert max_abs_error(model(*inputs), module(*inputs)) <= FP32_ATOL
