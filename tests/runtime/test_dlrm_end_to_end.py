"""DLRM-RMC1 end to end: compile once, run at many batch sizes from one artifact, save/load, and the
bad-input and bad-artifact paths. Tolerance: fp32 max abs error <= 1e-5 on the click probability."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import recc
from recc.cli import main as cli_main
from recc.compiler.artifact import ArtifactError, manifest_digest
from recc.models import create
from tests.conftest import FP32_ATOL, max_abs_error

SCALE = 0.001  # 4,000 rows per table: the real shapes except table height


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return create("dlrm-rmc1", scale=SCALE, seed=0)


@pytest.fixture(scope="module")
def compiled(model: torch.nn.Module) -> recc.CompiledModel:
    return recc.compile(model, model.example_inputs(4, seed=0), name="dlrm-rmc1")


@pytest.mark.parametrize("batch", [1, 7, 64, 1024])
def test_matches_eager_at_every_batch_from_one_artifact(model, compiled, batch: int) -> None:
    inputs = model.example_inputs(batch, seed=100 + batch)
    with torch.no_grad():
        expected = model(*inputs)
    got = compiled(*inputs)
    assert got.shape == expected.shape
    assert max_abs_error(got, expected) <= FP32_ATOL


def test_report_shows_fused_dense_layers(compiled) -> None:
    report = compiled.report
    assert report["final_ops"]["dense"] == 5  # bottom 128-64-32: 2 layers; top -256-64-1: 3 layers
    fuse = next(p for p in report["passes"] if p["name"] == "fuse-dense-activation")
    assert fuse["rewrites"]["activation-into-dense"] == 5
    assert "relu" not in report["final_ops"] and "sigmoid" not in report["final_ops"]
    assert report["kernels"] == {"check_ids": 1, "dense": 5, "batched_embedding_bag": 1, "dot_interaction": 1}
    assert report["final_ops"]["batched_embedding_bag"] == 1 and "embedding_bag" not in report["final_ops"]


def test_save_load_roundtrip_and_numpy_inputs(model, compiled, tmp_path: Path) -> None:
    path = compiled.save(tmp_path / "rmc1.recc")
    loaded = recc.load(path)
    inputs = model.example_inputs(5, seed=7)
    with torch.no_grad():
        expected = model(*inputs)
    assert max_abs_error(loaded(*[t.numpy() for t in inputs]), expected) <= FP32_ATOL
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["target"]["mcpu"] and manifest["inputs"][0]["shape"] == [{"coef": 1, "symbols": ["batch"]}, 128]
    assert "avx2" in manifest["target"]["features"]  # every x86 host recc supports has it; LLVM lists it
    assert all(not w["file"].endswith(".pkl") for w in manifest["weights"])


def _bad(compiled, inputs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compiled(*inputs)


def test_bad_inputs_raise_clear_errors_and_process_survives(model, compiled) -> None:
    dense, ids = model.example_inputs(6, seed=3)
    rows = model.info().tables[0].rows
    too_big = ids.clone()
    too_big[2, 5, 0] = rows
    _bad(compiled, (dense, too_big), f"embedding id {rows} is out of range for a table of {rows} rows")
    negative = ids.clone()
    negative[0, 0, 3] = -1
    _bad(compiled, (dense, negative), "embedding id -1 is negative")
    _bad(compiled, (dense, ids.float()), "input 'sparse_ids': expected dtype int64, got float32")
    _bad(compiled, (dense[:5], ids), "sparse_ids.*batch=6, but an earlier input has batch=5")
    _bad(compiled, (dense, ids[:, :7]), "input 'sparse_ids': dim 1 must be 8")
    _bad(compiled, (dense,), "expected 2 inputs")
    _bad(compiled, (dense.double(), ids), "expected dtype float32, got float64")
    largest = ids.clone()
    largest[:, :, 0] = rows - 1  # the largest valid id is accepted
    with torch.no_grad():
        assert max_abs_error(compiled(dense, largest), model(dense, largest)) <= FP32_ATOL
    assert compiled(dense, ids.int()).shape == (6, 1)  # int32 ids are widened, as eager accepts them


def test_batch_one_has_its_own_static_function(model, compiled) -> None:
    """Batch 1 runs "main_b1" (static shapes); it equals eager (test above) and takes batch 1 only."""
    assert compiled.manifest.specialized == {"main_b1": {"batch": 1}}
    name, symbol, index, axis = compiled._batch_one
    assert (name, symbol, index, axis) == ("main_b1", "batch", 0, 0)
    function = compiled._function_for(1)
    dense, ids = (x.clone() for x in model.example_inputs(2, seed=5))
    with pytest.raises(RuntimeError, match="mismatch"):
        function(dense, ids, *compiled._weights)
    with torch.no_grad():
        assert max_abs_error(function(dense[:1], ids[:1], *compiled._weights), model(dense[:1], ids[:1])) <= FP32_ATOL
    # a batch-1 first input with a batch-2 second one goes to main_b1, which refuses; the call explains
    _bad(compiled, (dense[:1].clone(), ids), "sparse_ids.*batch=2, but an earlier input has batch=1")


def test_ids_are_checked_inside_the_compiled_function(model, compiled) -> None:
    """Aligned tensors of the declared shape go straight to the compiled function, whose first kernel
    range-checks the ids: the function itself must refuse a bad id (before any gather reads a table), the
    call must then name it, and the next good call must be unaffected."""
    assert list(compiled.manifest.id_checks.in_kernel) == ["sparse_ids"] and compiled._fast
    dense, ids = (x.clone() for x in model.example_inputs(5, seed=4))  # torch-allocated: 64-byte aligned
    rows = model.info().tables[0].rows
    for bad in (rows, -3, 2**62):
        wrong = ids.clone()
        wrong[4, 7, 79] = bad
        with pytest.raises(RuntimeError, match="embedding id is out of range"):
            compiled._main(dense, wrong, *compiled._weights)
        _bad(compiled, (dense, wrong), f"embedding id {bad} is")
        with torch.no_grad():
            assert max_abs_error(compiled(dense, ids), model(dense, ids)) <= FP32_ATOL


def _copy(compiled, tmp_path: Path, name: str) -> Path:
    return compiled.save(tmp_path / name)


def test_truncated_or_tampered_artifact_is_refused(compiled, tmp_path: Path) -> None:
    path = _copy(compiled, tmp_path, "trunc.recc")
    lib = path / "lib.so"
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="lib.so does not match its sha256"):
        recc.load(path)

    path = _copy(compiled, tmp_path, "tamper.recc")
    weight = next((path / "weights").iterdir())
    data = bytearray(weight.read_bytes())
    data[-1] ^= 0xFF
    weight.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        recc.load(path)

    path = _copy(compiled, tmp_path, "nomanifest.recc")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        recc.load(path)

    path = _copy(compiled, tmp_path, "missing.recc")
    shutil.rmtree(path / "weights")
    with pytest.raises(ArtifactError, match="is missing"):
        recc.load(path)
    with pytest.raises(ArtifactError, match="no such artifact"):
        recc.load(tmp_path / "nope.recc")


def test_host_without_a_required_cpu_feature_is_refused(compiled, tmp_path: Path) -> None:
    path = _copy(compiled, tmp_path, "features.recc")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["target"]["features"].append("avx1024-made-up")
    manifest["digest"] = manifest_digest(manifest)  # a consistent edit: the CPU check itself must refuse it
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="uses avx1024-made-up, which this host's CPU lacks"):
        recc.load(path)
    assert recc.load(path, allow_cpu_mismatch=True) is not None


def test_cli_compile_run_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.recc"
    assert cli_main(["compile", "dlrm-rmc1", "--scale", str(SCALE), "-o", str(out)]) == 0
    assert "fuse-dense-activation" in capsys.readouterr().out
    assert cli_main(["run", str(out), "--batch", "64", "--repeat", "3", "--rounds", "2", "--warmup", "1"]) == 0
    printed = capsys.readouterr().out
    assert "max abs error vs eager" in printed and "OK" in printed
    assert cli_main(["report", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"name", "rewrites", "rejects", "nodes_before", "nodes_after", "ops_before", "ops_after", "ms"} <= set(
        report["passes"][0])
    assert cli_main(["run", str(tmp_path / "absent.recc")]) == 2
