"""A fuzzer for damaged artifacts: random damage to a real compiled artifact (bit flips and truncation in
every file, missing and extra files, edits of the manifest with or without a recomputed digest, symlinks
and `..` paths, a foreign shared library in place of lib.so). Every case must end in one of two ways:
refused by `recc.load` with an ArtifactError, or loaded and computing exactly what the undamaged artifact
computes. Anything else (another exception, a crash, a different answer) fails. With a signing key
demanded, every damage that touches a file the manifest lists must be refused, even a fully consistent
one. The CI tier runs EXAMPLES cases per test; RECC_FUZZ_EXAMPLES raises it (the counts behind
bench/results/fuzz/ came from RECC_FUZZ_EXAMPLES=1000)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recc
from recc.compiler.artifact import ArtifactError, manifest_digest, sha256_file

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("RECC_FUZZ_EXAMPLES", "150"))
LOG = os.environ.get("RECC_FUZZ_LOG")  # a file to append one JSON line per case to (for the fuzz report)
KEY = b"fuzz-deploy-key"
FOREIGN_LIBRARY = next((Path(np.__file__).parent / "linalg").glob("*.so"))  # a real .so that is not recc's
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=True)
                           | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(50, 8, mode="sum")
        self.lin = torch.nn.Linear(12, 1)

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(torch.cat([self.bag(ids), x], 1)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, tuple[torch.Tensor, ...], torch.Tensor]:
    torch.manual_seed(0)
    inputs = (torch.randint(0, 50, (5, 3)), torch.randn(5, 4))
    compiled = recc.compile(Model().eval(), inputs, tuning_db=None, signing_key=KEY)
    path = compiled.save(tmp_path_factory.mktemp("pristine") / "m.recc")
    return path, inputs, compiled(*inputs).clone()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _reseal(root: Path, edit) -> None:
    j = json.loads((root / "manifest.json").read_text())
    edit(j)
    j["digest"] = manifest_digest(j)
    (root / "manifest.json").write_text(json.dumps(j))


def _set_at(j: Any, path: list[int], value: Any) -> None:
    """Replace the value reached by following `path` (indices into the keys/items at each level)."""
    for depth, step in enumerate(path):
        keys = [k for k in j if k != "digest"] if isinstance(j, dict) else list(range(len(j))) \
            if isinstance(j, list) else []  # (an edited digest is recomputed by the reseal: no change)
        if not keys:
            return
        key = keys[step % len(keys)]
        if depth == len(path) - 1 or not isinstance(j[key], (dict, list)) or not j[key]:
            j[key] = value
            return
        j = j[key]


def _damage(root: Path, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["flip", "truncate", "delete", "extra", "edit", "edit-resealed",
                                      "outside", "foreign-lib", "weight-resealed"]))
    files = _files(root)
    if kind == "flip":
        f = data.draw(st.sampled_from(files))
        raw = bytearray(f.read_bytes())
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        f.write_bytes(bytes(raw))
    elif kind == "truncate":
        f = data.draw(st.sampled_from(files))
        f.write_bytes(f.read_bytes()[:data.draw(st.integers(0, f.stat().st_size - 1))])
    elif kind == "delete":
        data.draw(st.sampled_from(files)).unlink()
    elif kind == "extra":
        (root / data.draw(st.sampled_from(["notes.txt", "weights/9999.npy", "lib.so.bak"]))).write_bytes(b"x")
    elif kind in ("edit", "edit-resealed"):
        before = (root / "manifest.json").read_text()
        j = json.loads(before)
        _set_at(j, data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=5)), data.draw(JSON_VALUES))
        if j == json.loads(before):
            return "no-op"  # the drawn value was already there
        if kind == "edit-resealed":
            j["digest"] = manifest_digest(j)
        (root / "manifest.json").write_text(json.dumps(j))
    elif kind == "outside":
        target = data.draw(st.sampled_from(["/etc/hostname", "../escape.npy", "weights/../../escape.npy"]))
        weight = root / "weights" / "0000.npy"
        if target.startswith("/"):
            weight.unlink()
            weight.symlink_to(target)
            _reseal(root, lambda j: j["files"].update({"weights/0000.npy": sha256_file(weight)}))
        else:
            shutil.copy(weight, root / "weights" / "x.npy")
            _reseal(root, lambda j: (j["weights"][0].update(file=target), j["files"].update({target: "0" * 64})))
    elif kind == "foreign-lib":
        shutil.copy(FOREIGN_LIBRARY, root / "lib.so")
        _reseal(root, lambda j: j["files"].update({"lib.so": sha256_file(root / "lib.so")}))
    else:  # a weight replaced and every hash fixed: only a signature can tell
        weight = root / "weights" / "0000.npy"
        np.save(weight, np.full_like(np.load(weight), 3.0), allow_pickle=False)
        _reseal(root, lambda j: j["files"].update({"weights/0000.npy": sha256_file(weight)}))
    return kind


def _log(test: str, kind: str, outcome: str) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"test": test, "damage": kind, "outcome": outcome}) + "\n")


def _check(root: Path, pristine, key: bytes | None, kind: str) -> None:
    _, inputs, expected = pristine
    test = "no key" if key is None else "key demanded"
    try:
        model = recc.load(root, key=key)
    except ArtifactError:
        _log(test, kind, "refused: ArtifactError")
        return  # refused with the artifact error: the intended outcome for damage
    try:
        got = model(*inputs)
    except ValueError:  # a consistent edit (no key) may change what the model accepts; it must say so
        assert key is None and kind in ("edit-resealed",), kind
        _log(test, kind, "loaded; call refused with ValueError")
        return
    if key is not None or kind not in ("edit-resealed", "weight-resealed"):
        # with a key, or without a deliberate consistent edit, a loaded artifact computes what it did
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=f"damage {kind!r} changed the answer")
        _log(test, kind, "loaded; same answer")
    else:
        _log(test, kind, "loaded; consistent edit (only a signature can refuse it)")


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _damaged_copy(pristine, tmp_path_factory, data: st.DataObject) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("damaged") / "m.recc"
    shutil.copytree(pristine[0], root, symlinks=True)
    return root, _damage(root, data)


@FUZZ
@given(data=st.data())
def test_damage_is_refused_or_harmless(pristine, tmp_path_factory, data) -> None:
    root, kind = _damaged_copy(pristine, tmp_path_factory, data)
    _check(root, pristine, None, kind)


@FUZZ
@given(data=st.data())
def test_with_a_key_demanded_every_listed_change_is_refused(pristine, tmp_path_factory, data) -> None:
    root, kind = _damaged_copy(pristine, tmp_path_factory, data)
    if kind in ("extra", "no-op"):
        _check(root, pristine, KEY, kind)  # an unlisted file is never read: loads, same answers
        return
    with pytest.raises(ArtifactError):
        recc.load(root, key=KEY)
    _log("key demanded", kind, "refused: ArtifactError")
