"""The artifact schema: one typed manifest, written by the compiler and read back exactly; anything
malformed, tampered or pointing outside the directory is an ArtifactError naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recc.compiler.artifact import (ArtifactError, IdChecks, IdLimit, Manifest, OffsetCheck, TargetInfo, TensorSpec,
                                    id_bounds, load_weight, manifest_digest, read_manifest, sha256_file,
                                    write_manifest, write_weights)
from recc.compiler.ir.types import Sym


def _manifest(weights=()) -> Manifest:
    return Manifest(
        model="m",
        inputs=(TensorSpec("dense", "float32", (Sym(("batch",)), 13)), TensorSpec("ids", "int64", (Sym(("batch",), 26),)),
                TensorSpec("off", "int64", (Sym(("batch",)),))),
        outputs=(TensorSpec("out", "float32", (Sym(("batch",)), 1)),),
        target=TargetInfo("cpu", "znver4", 2, "", ("avx", "avx2", "fma")),
        weights=tuple(weights),
        id_checks=IdChecks({"ids": (IdLimit(0, 0, 10, 100), IdLimit(0, 10, 26, 7))},
                           (OffsetCheck("off", "ids", True),), ("h",), ("ids",)),
        pipeline=("cse",), versions={"tvm": "0.27"}, specialized={"main_b1": {"batch": 1}})


def _artifact(tmp_path: Path, key: bytes | None = None) -> tuple[Path, Manifest]:
    root = tmp_path / "m.recc"
    root.mkdir()
    (root / "lib.so").write_bytes(b"\x7fELF not really")
    weights = write_weights(root, [("w1", np.arange(6, dtype=np.float32).reshape(2, 3)), ("t", np.zeros(4, np.int64))])
    return root, write_manifest(root, _manifest(weights), signing_key=key)


def _edit_manifest(root: Path, edit, reseal: bool = True) -> None:
    """Edit manifest.json as JSON; `reseal`: recompute its digest, as a deliberate tamperer would."""
    j = json.loads((root / "manifest.json").read_text())
    edit(j)
    if reseal:
        j["digest"] = manifest_digest(j)
    (root / "manifest.json").write_text(json.dumps(j))


def test_manifest_round_trips_through_json_with_typed_dims(tmp_path: Path) -> None:
    root, written = _artifact(tmp_path)
    read = read_manifest(root)
    assert read == written
    assert read.inputs[1].shape == (Sym(("batch",), 26),) and str(read.inputs[1].shape[0]) == "26*batch"
    assert [w.name for w in read.weights] == ["w1", "t"]  # the function's parameter order
    assert read.id_checks.ids["ids"][1] == IdLimit(0, 10, 26, 7)
    np.testing.assert_array_equal(load_weight(root, read.weights[0]), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_id_bounds_is_one_array_for_codegen_and_runtime() -> None:
    bounds = id_bounds([IdLimit(0, 0, 2, 5), IdLimit(0, 3, 4, 9)], 5)
    assert bounds.dtype == np.uint64
    assert bounds.tolist() == [5, 5, 2**64 - 1, 9, 2**64 - 1]
    assert (np.array([-1], np.int64).view(np.uint64) >= bounds[:1]).all()  # a negative id fails the same check


def test_missing_cpu_features_are_named() -> None:
    target = TargetInfo("cpu", "x", features=("avx2", "avx512vnni", "amx-tile", "sse4.2"))
    assert target.missing_features({"avx2", "avx512_vnni", "sse4_2"}) == ["amx-tile"]  # /proc/cpuinfo spelling


@pytest.mark.parametrize("edit, match", [
    (lambda j: j.update(format_version=1), "format version 1 is not supported"),
    (lambda j: j.update(inputs="x"), "malformed field inputs"),
    (lambda j: j["inputs"][0].update(dtype="float99"), "malformed field tensor"),
    (lambda j: j["inputs"][0]["shape"].__setitem__(0, "batch"), "malformed field dim 'batch'"),
    (lambda j: j["inputs"][0]["shape"].__setitem__(0, {"coef": 1, "symbols": ["__import__('os')"]}), "malformed field dim"),
    (lambda j: j["inputs"][0]["shape"].__setitem__(1, -3), "malformed field dim -3"),
    (lambda j: j["id_checks"]["ids"].update(ids=[[0, 0, 10]]), "malformed field id_checks.ids.ids"),
    (lambda j: j["target"].update(kind="tpu"), "malformed field target"),
    (lambda j: j["files"].pop("lib.so"), "lists no library"),
    (lambda j: j["files"].pop("weights/0001.npy"), "have no recorded sha256"),
    (lambda j: j["files"].update({"../../etc/passwd": "0"}), "points outside the artifact"),
    (lambda j: j["weights"][0].update(shape=[3, 2]), "weight w1 is float32\\[2, 3\\], manifest says float32\\[3, 2\\]"),
])
def test_malformed_or_tampered_manifest_is_refused(tmp_path: Path, edit, match: str) -> None:
    root, _ = _artifact(tmp_path)
    _edit_manifest(root, edit)  # digest recomputed: the field checks themselves must refuse it
    with pytest.raises(ArtifactError, match=match):
        manifest = read_manifest(root)
        load_weight(root, manifest.weights[0])


def test_changed_file_fails_its_hash(tmp_path: Path) -> None:
    root, _ = _artifact(tmp_path)
    (root / "weights" / "0000.npy").write_bytes((root / "weights" / "0000.npy").read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="weights/0000.npy does not match its sha256"):
        read_manifest(root)
    assert read_manifest(root, check_hashes=False).model == "m"


def test_an_edited_manifest_fails_its_digest(tmp_path: Path) -> None:
    root, _ = _artifact(tmp_path)
    _edit_manifest(root, lambda j: j["id_checks"]["ids"]["ids"][0].__setitem__(3, 10**9), reseal=False)
    with pytest.raises(ArtifactError, match="does not match its digest"):
        read_manifest(root)


def test_a_signed_artifact_refuses_consistent_tampering(tmp_path: Path) -> None:
    root, _ = _artifact(tmp_path, key=b"deploy-key")
    assert read_manifest(root, key=b"deploy-key").model == "m"
    with pytest.raises(ArtifactError, match="signature does not match"):
        read_manifest(root, key=b"another-key")

    # replace a weight and fix every hash: consistent, so only the signature can tell
    weight = root / "weights" / "0000.npy"
    np.save(weight, np.full((2, 3), 7, np.float32), allow_pickle=False)
    _edit_manifest(root, lambda j: j["files"].update({"weights/0000.npy": sha256_file(weight)}))
    assert read_manifest(root).model == "m"  # without a key, a consistent artifact is accepted
    with pytest.raises(ArtifactError, match="signature does not match"):
        read_manifest(root, key=b"deploy-key")


def test_an_unsigned_artifact_is_refused_when_a_signature_is_required(tmp_path: Path) -> None:
    root, _ = _artifact(tmp_path)
    with pytest.raises(ArtifactError, match="not signed, and a signature is required"):
        read_manifest(root, key=b"deploy-key")
