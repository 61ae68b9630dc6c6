"""The artifact format: a directory `NAME.recc/` holding

    manifest.json   model, input/output signature, target, pipeline, versions, weights index,
                    id-range checks, and the sha256 of every other file
    lib.so          the compiled library (TVM Relax executable)
    weights/*.npy   one array per weight, memory-mappable, loaded with allow_pickle=False
    report.json     the pass report;  graph.txt  the optimized IR

Nothing is unpickled. Reading checks the format version, that every listed file exists with its
recorded hash, and that no unlisted file stands in for a listed one; any failure is an ArtifactError
that names the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "recc-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A missing, corrupt, truncated, tampered or incompatible artifact."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_weights(directory: Path, weights: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    directory.mkdir(parents=True, exist_ok=True)
    index = []
    for i, (name, array) in enumerate(weights.items()):
        rel = f"weights/{i:04d}.npy"
        np.save(directory.parent / rel, np.ascontiguousarray(array), allow_pickle=False)
        index.append({"name": name, "file": rel, "dtype": str(array.dtype), "shape": list(array.shape)})
    return index


def finalize_manifest(root: Path, manifest: dict[str, Any]) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION,
                    files={p.relative_to(root).as_posix(): sha256_file(p) for p in files})
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(root: Path, check_hashes: bool = True) -> dict[str, Any]:
    root = Path(root)
    if not root.exists():
        raise ArtifactError(f"{root}: no such artifact")
    if not root.is_dir():
        raise ArtifactError(f"{root}: an artifact is a directory (NAME.recc/), this is a file")
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{root}: missing {MANIFEST}; not a recc artifact or an incomplete copy")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: corrupt manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a recc manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {manifest.get('format_version')} is not supported "
                            f"(this recc reads version {FORMAT_VERSION}); recompile the model")
    files = manifest.get("files")
    if not isinstance(files, dict) or "lib.so" not in files:
        raise ArtifactError(f"{path}: manifest lists no library")
    for rel, digest in files.items():
        file = (root / rel).resolve()
        if root.resolve() not in file.parents:
            raise ArtifactError(f"{path}: file entry {rel!r} points outside the artifact")
        if not file.is_file():
            raise ArtifactError(f"{root}: {rel} is missing (truncated or incomplete artifact)")
        if check_hashes and sha256_file(file) != digest:
            raise ArtifactError(f"{root}: {rel} does not match its sha256 in the manifest "
                                "(corrupt, truncated or modified after compilation)")
    return manifest


def load_weight(root: Path, entry: dict[str, Any]) -> np.ndarray:
    """Memory-map one weight (copy-on-write, so it can be handed to TVM without a copy)."""
    path = root / entry["file"]
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ArtifactError(f"{path}: unreadable weight file ({e})") from e
    if str(array.dtype) != entry["dtype"] or list(array.shape) != entry["shape"]:
        raise ArtifactError(f"{path}: weight {entry['name']} is {array.dtype}{list(array.shape)}, manifest says "
                            f"{entry['dtype']}{entry['shape']}")
    return array
