"""The artifact format, and the only place each fact about it lives (docs/artifact.md).

A compiled model is a directory `NAME.recc/`:

    manifest.json   the Manifest below, plus the sha256 of every other file
    lib.so          the compiled library (TVM Relax executable)
    weights/*.npy   one array per weight parameter, memory-mappable, loaded with allow_pickle=False
    report.json     the pass report;  graph.txt / graph.json  the optimized IR

The compiler writes a `Manifest` (`write_artifact`), the runtime reads one (`read_manifest`), bench and
the exporters read the same typed object: the signature with its symbolic dims, the weight parameters
in the order the compiled function takes them (after the inputs), the id ranges every gather relies on,
the CPU features the code needs, and the format version. Nothing is unpickled. Reading checks the format
version, the manifest's own digest (sha256 of its canonical JSON: catches corruption of the manifest),
every field's type, that every listed file exists with its recorded hash, and that no entry points outside
the directory; any failure is an ArtifactError naming the file and the problem. A digest anyone can
recompute does not stop a deliberate edit: a deployment that must refuse tampered-but-consistent artifacts
signs them (`signing_key` at compile time: HMAC-SHA256 over the canonical JSON) and demands the
signature at load (`key`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recc.compiler.ir.types import DTYPES, Dim, Sym

FORMAT = "recc-artifact"
FORMAT_VERSION = 2  # 2: typed signature dims, required CPU features, id limits as objects
MANIFEST = "manifest.json"
LIBRARY = "lib.so"

# The x86 ISA extensions a compiled library may use, by LLVM's names. The compiler records those its
# target has; the runtime refuses a host that lacks any (names compare without "_", "-" and ".", so
# /proc/cpuinfo's "avx512_vnni" and "sse4_2" match LLVM's "avx512vnni" and "sse4.2").
ISA_FEATURES = ("sse4.2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                "avx512vnni", "avx512bf16", "avx512fp16", "amx-tile", "amx-int8", "amx-bf16")


def feature_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(".", "")


class ArtifactError(ValueError):
    """A missing, corrupt, truncated, tampered or incompatible artifact."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ArtifactError(f"{MANIFEST}: malformed field {what}")


# -- the signature ----------------------------------------------------------------------------------------
def dim_to_json(d: Dim) -> Any:
    return d if isinstance(d, int) else {"coef": d.coef, "symbols": list(d.names)}


def dim_from_json(d: Any) -> Dim:
    if isinstance(d, int) and not isinstance(d, bool) and d >= 0:
        return d
    _need(isinstance(d, dict) and isinstance(d.get("coef"), int) and d["coef"] > 0
          and isinstance(d.get("symbols"), list) and d["symbols"]
          and all(isinstance(s, str) and s.isidentifier() for s in d["symbols"]), f"dim {d!r}")
    return Sym(tuple(d["symbols"]), d["coef"])


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of the compiled function: dims are ints or symbolic monomials (`80*batch`)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": [dim_to_json(d) for d in self.shape]}

    @classmethod
    def from_json(cls, j: Any) -> TensorSpec:
        _need(isinstance(j, dict) and isinstance(j.get("name"), str) and j.get("dtype") in DTYPES
              and isinstance(j.get("shape"), list), f"tensor {j!r}")
        return cls(j["name"], j["dtype"], tuple(dim_from_json(d) for d in j["shape"]))

    def shape_str(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


# -- id ranges --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdLimit:
    """`input[..., start:end along axis, ...] < rows` (axis None: the whole input); ids must also be >= 0,
    or with `wrap` (a gather that reads row `id + rows` for a negative id, as `w[ids]` does) >= -rows."""

    axis: int | None
    start: int | None
    end: int | None
    rows: int
    wrap: bool = False

    def to_json(self) -> list[Any]:  # [axis, start, end, rows], plus `true` when the gather wraps
        return [self.axis, self.start, self.end, self.rows] + ([True] if self.wrap else [])


# what the compiled function's index check raises (kernels/cpu/checks.py); the runtime recognises it
BAD_ID_MESSAGE = "recc: an embedding id is out of range"


def id_bounds(limits: Sequence[IdLimit], size: int) -> np.ndarray:
    """Per-element upper bounds along the limits' one axis of static `size`, as uint64: viewed as uint64
    a negative id is huge, so `ids >= bound` catches both ends at once; columns no table reads get the
    largest uint64 (no limit). Codegen's check kernel and the runtime's check use this one array."""
    bound = np.full(size, np.iinfo(np.uint64).max, np.uint64)
    for lim in limits:
        bound[lim.start:lim.end] = np.minimum(bound[lim.start:lim.end], np.uint64(lim.rows))
    return bound


@dataclass(frozen=True)
class OffsetCheck:
    offsets: str
    ids: str
    include_last_offset: bool
    row: int | None = None  # the offsets are row `row` of a 2-D input [tables, batch] (reference DLRM)


@dataclass(frozen=True)
class IdChecks:
    ids: dict[str, tuple[IdLimit, ...]] = field(default_factory=dict)
    offsets: tuple[OffsetCheck, ...] = ()
    unchecked: tuple[str, ...] = ()  # gathers whose ids the graph computes: checked in the function, not before
    in_kernel: tuple[str, ...] = ()  # ids inputs the compiled function range-checks itself

    def to_json(self) -> dict[str, Any]:
        return {"ids": {k: [x.to_json() for x in v] for k, v in self.ids.items()},
                "offsets": [o.__dict__ for o in self.offsets], "unchecked": list(self.unchecked),
                "in_kernel": list(self.in_kernel)}

    @classmethod
    def from_json(cls, j: Any) -> IdChecks:
        _need(isinstance(j, dict) and isinstance(j.get("ids"), dict), "id_checks")
        ids = {}
        for name, lims in j["ids"].items():
            _need(isinstance(lims, list) and all(isinstance(x, list) and len(x) in (4, 5) and isinstance(x[3], int)
                                                 and x[4:] in ([], [True]) for x in lims), f"id_checks.ids.{name}")
            ids[name] = tuple(IdLimit(*x) for x in lims)
        try:
            offsets = tuple(OffsetCheck(o["offsets"], o["ids"], bool(o["include_last_offset"]), o.get("row"))
                            for o in j.get("offsets", []))
            _need(all(o.row is None or (type(o.row) is int and o.row >= 0) for o in offsets), "id_checks.offsets")
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{MANIFEST}: malformed field id_checks.offsets ({e})") from e
        return cls(ids, offsets, tuple(j.get("unchecked", [])), tuple(j.get("in_kernel", [])))


# -- target and weights -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetInfo:
    kind: str  # "cpu" | "cuda"
    mcpu: str = ""
    num_cores: int = 1
    arch: str = ""
    features: tuple[str, ...] = ()  # ISA_FEATURES the code may use: a host must have them all

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, features=list(self.features))

    @classmethod
    def from_json(cls, j: Any) -> TargetInfo:
        _need(isinstance(j, dict) and j.get("kind") in ("cpu", "cuda") and isinstance(j.get("mcpu"), str)
              and isinstance(j.get("arch"), str) and type(j.get("num_cores")) is int and j["num_cores"] > 0
              and isinstance(j.get("features"), list) and all(isinstance(f, str) for f in j["features"]), "target")
        return cls(j["kind"], j["mcpu"], j["num_cores"], j["arch"], tuple(j["features"]))

    def missing_features(self, host: set[str]) -> list[str]:
        have = {feature_key(f) for f in host}
        return [f for f in self.features if feature_key(f) not in have]


@dataclass(frozen=True)
class WeightEntry:
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, j: Any) -> WeightEntry:
        _need(isinstance(j, dict) and isinstance(j.get("file"), str) and isinstance(j.get("shape"), list),
              f"weights entry {j!r}")
        return cls(str(j["name"]), j["file"], str(j["dtype"]), tuple(int(n) for n in j["shape"]))


# -- the manifest -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    model: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    target: TargetInfo
    weights: tuple[WeightEntry, ...]  # the compiled function's parameters after the inputs, in order
    id_checks: IdChecks = IdChecks()
    pipeline: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "python"})
    # functions besides "main" specialized to static values of shape symbols, e.g. {"main_b1": {"batch": 1}}
    specialized: dict[str, dict[str, int]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, filled when written

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
                "target": self.target.to_json(), "weights": [dict(w.__dict__, shape=list(w.shape)) for w in self.weights],
                "id_checks": self.id_checks.to_json(), "pipeline": list(self.pipeline), "versions": self.versions,
                "source": self.source, "specialized": self.specialized, "files": self.files}

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> Manifest:
        for key, kind in (("model", str), ("inputs", list), ("outputs", list), ("weights", list),
                          ("files", dict), ("versions", dict), ("specialized", dict)):
            _need(isinstance(j.get(key), kind), key)
        manifest = cls(j["model"], tuple(TensorSpec.from_json(t) for t in j["inputs"]),
                       tuple(TensorSpec.from_json(t) for t in j["outputs"]), TargetInfo.from_json(j.get("target")),
                       tuple(WeightEntry.from_json(w) for w in j["weights"]), IdChecks.from_json(j.get("id_checks")),
                       tuple(j.get("pipeline", ())), j["versions"], j.get("source") or {"kind": "python"},
                       j["specialized"], j["files"])
        manifest._check_references()
        return manifest

    def _check_references(self) -> None:
        """Fields that name other fields name ones that exist, with values a reader can use as they are."""
        ranks = {t.name: len(t.shape) for t in self.inputs}
        _need(len(ranks) == len(self.inputs), "inputs (duplicate names)")
        for name, limits in self.id_checks.ids.items():
            _need(name in ranks and len(limits) > 0, f"id_checks.ids ({name!r}: not an input, or no limits)")
            for lim in limits:
                _need((lim.axis is None and lim.start is None and lim.end is None)
                      or (isinstance(lim.axis, int) and 0 <= lim.axis < ranks[name]
                          and all(isinstance(x, int) and x >= 0 for x in (lim.start, lim.end))),
                      f"id_checks.ids.{name} (limit {lim})")
                _need(isinstance(lim.rows, int) and not isinstance(lim.rows, bool) and lim.rows > 0,
                      f"id_checks.ids.{name} (rows {lim.rows!r})")
        for check in self.id_checks.offsets:
            _need(check.offsets in ranks and check.ids in ranks
                  and ranks[check.offsets] == (1 if check.row is None else 2), f"id_checks.offsets ({check})")
        _need(set(self.id_checks.in_kernel) <= set(self.id_checks.ids), "id_checks.in_kernel")
        _need(all(isinstance(f, str) and isinstance(v, dict) and v and all(
            isinstance(k, str) and isinstance(n, int) and n > 0 for k, n in v.items())
            for f, v in self.specialized.items()), "specialized")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def place_file(source: Path, dest: Path) -> None:
    """`dest` gets `source`'s bytes: a hard link where the filesystem allows (no bytes copied), else a
    kernel-side copy (page cache, never this process's memory)."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _is_whole(array: np.ndarray, spilled: np.ndarray | None) -> bool:  # all of spilled's bytes, as in its file
    return (spilled is not None and array.dtype == spilled.dtype and array.shape == spilled.shape
            and array.flags.c_contiguous and array.ctypes.data == spilled.ctypes.data)


def write_weights(root: Path, weights: Sequence[tuple[str, np.ndarray]],
                  spilled: dict[str, np.ndarray] | None = None) -> tuple[WeightEntry, ...]:
    """Write the weight parameters, in the compiled function's order, to root/weights/NNNN.npy. A weight
    that is itself a whole .npy file a pass streamed to disk (`spilled`: path -> that array; see
    ir/spill.py) is linked into place, not read back and written again."""
    (root / "weights").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (name, array) in enumerate(weights):
        rel = f"weights/{i:04d}.npy"
        if _is_whole(array, (spilled or {}).get(str(getattr(array, "filename", None)))):
            place_file(Path(array.filename), root / rel)
        else:
            np.save(root / rel, np.ascontiguousarray(array), allow_pickle=False)
        entries.append(WeightEntry(name, rel, str(array.dtype), tuple(array.shape)))
    return tuple(entries)


def _canonical(j: dict[str, Any]) -> bytes:
    """The bytes the digest and the signature cover: every field but themselves, keys sorted."""
    body = {k: v for k, v in j.items() if k not in ("digest", "signature")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_digest(j: dict[str, Any]) -> str:
    """The digest a manifest (as JSON) must carry: sha256 of its canonical JSON."""
    return hashlib.sha256(_canonical(j)).hexdigest()


def _sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def write_manifest(root: Path, manifest: Manifest, signing_key: bytes | None = None) -> Manifest:
    """Hash every file under `root` into the manifest and write it, with the manifest's own digest and,
    given a key, its HMAC-SHA256 signature; returns the manifest as written."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = Manifest(**{**manifest.__dict__, "files": {p.relative_to(root).as_posix(): sha256_file(p)
                                                          for p in files}})
    j = manifest.to_json()
    body = _canonical(j)
    j["digest"] = manifest_digest(j)
    if signing_key is not None:
        j["signature"] = {"alg": "hmac-sha256", "value": _sign(signing_key, body)}
    (root / MANIFEST).write_text(json.dumps(j, indent=2, sort_keys=True))
    return manifest


def _check_seal(path: Path, j: dict[str, Any], key: bytes | None) -> None:
    body = _canonical(j)
    if j.get("digest") != manifest_digest(j):
        raise ArtifactError(f"{path}: the manifest does not match its digest (corrupt or edited by hand)")
    if key is None:
        return
    signature = j.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "hmac-sha256":
        raise ArtifactError(f"{path}: the artifact is not signed, and a signature is required")
    if not hmac.compare_digest(str(signature.get("value")).encode(), _sign(key, body).encode()):
        raise ArtifactError(f"{path}: the signature does not match (tampered, or signed with another key)")


def _load_json(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise ArtifactError(f"{root}: no such artifact")
    if not root.is_dir():
        raise ArtifactError(f"{root}: an artifact is a directory (NAME.recc/), this is a file")
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{root}: missing {MANIFEST}; not a recc artifact or an incomplete copy")
    try:
        j = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: corrupt manifest ({e})") from e
    if not isinstance(j, dict) or j.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a recc manifest")
    if j.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {j.get('format_version')} is not supported "
                            f"(this recc reads version {FORMAT_VERSION}); recompile the model")
    return j


def read_manifest(root: Path, check_hashes: bool = True, key: bytes | None = None) -> Manifest:
    """The artifact's manifest, checked (see the module docstring); `key`: demand a valid signature."""
    root = Path(root)
    j = _load_json(root)
    _check_seal(root / MANIFEST, j, key)
    try:
        manifest = Manifest.from_json(j)
    except ArtifactError as e:
        raise ArtifactError(f"{root}: {e}" if str(e).startswith(MANIFEST) else str(e)) from None
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{root / MANIFEST}: malformed manifest ({e})") from e
    if LIBRARY not in manifest.files:
        raise ArtifactError(f"{root / MANIFEST}: manifest lists no library")
    listed = {w.file for w in manifest.weights} - set(manifest.files)
    if listed:
        raise ArtifactError(f"{root / MANIFEST}: weights {sorted(listed)} have no recorded sha256")
    for rel, digest in manifest.files.items():
        file = (root / rel).resolve()
        if root.resolve() not in file.parents:
            raise ArtifactError(f"{root / MANIFEST}: file entry {rel!r} points outside the artifact")
        if not file.is_file():
            raise ArtifactError(f"{root}: {rel} is missing (truncated or incomplete artifact)")
        if check_hashes and sha256_file(file) != digest:
            raise ArtifactError(f"{root}: {rel} does not match its sha256 in the manifest "
                                "(corrupt, truncated or modified after compilation)")
    return manifest


def load_weight(root: Path, entry: WeightEntry) -> np.ndarray:
    """Memory-map one weight (copy-on-write, so it can be handed to TVM without a copy)."""
    path = root / entry.file
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ArtifactError(f"{path}: unreadable weight file ({e})") from e
    if str(array.dtype) != entry.dtype or tuple(array.shape) != entry.shape:
        raise ArtifactError(f"{path}: weight {entry.name} is {array.dtype}{list(array.shape)}, manifest says "
                            f"{entry.dtype}{list(entry.shape)}")
    return array
