"""Schedule tuning for recc's kernels: a small measured search, bounded by a time budget, remembered in a
tuning database (JSON) that later compiles reuse with or without tuning.

MetaSchedule does not run with this TVM wheel (docs/toolchain-notes.md), and recc's kernels
have few knobs, so the tuner is a grid over them, each candidate built on its own and timed on this
machine with random inputs at a representative batch:
- dense: `row_block` (register tiles per column tile sharing its packed weights from L2), batch 256;
- batched_embedding_bag: the software-prefetch distance in lookups (0 = off), batch 256, uniform ids.
The default is always measured too, and a candidate replaces it only if it is at least 3% faster
(below that, run-to-run noise decides). Entries are keyed by kernel, shape and target CPU, so a database
can travel between machines without applying one CPU's choices to another.

Database format: {"version": 1, "entries": {key: {"params": {...}, "us": t, "default_us": t0}}}. A file
that is not this raises TuningDatabaseError naming it (a compile does not silently ignore it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

FORMAT_VERSION = 1
MIN_GAIN = 0.03
DENSE_ROW_BLOCKS = (1, 4, 8, 16, 32)
PREFETCH_DISTANCES = (0, 8, 16, 24, 32)


class TuningDatabaseError(ValueError):
    """The tuning database file is not a recc tuning database."""


def default_database_path() -> Path:
    return Path.home() / ".cache" / "recc" / "tuning.json"


@dataclass
class TuningDatabase:
    path: Path | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> "TuningDatabase":
        if path is None or not Path(path).exists():
            return cls(Path(path) if path else None)
        try:
            data = json.loads(Path(path).read_text())
            entries = data["entries"]
            if data.get("version") != FORMAT_VERSION or not isinstance(entries, dict):
                raise KeyError("version")
        except (ValueError, KeyError, TypeError) as e:
            raise TuningDatabaseError(f"{path}: not a recc tuning database ({e}); delete it or pass another "
                                      "--tuning-db") from e
        return cls(Path(path), entries)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": FORMAT_VERSION, "entries": self.entries}, indent=1, sort_keys=True))
        tmp.replace(self.path)


@dataclass
class Tuner:
    """What lowering asks for each kernel's schedule parameters. Without `budget_s` it only looks up the
    database; with it, it searches the kernels the database lacks until the budget is spent."""

    database: TuningDatabase
    cpu: str
    budget_s: float | None = None
    target: Any = None
    log: Callable[[str], None] = lambda msg: None
    tuned: list[dict[str, Any]] = field(default_factory=list)  # this compile's searches, for the report
    reused: int = 0  # distinct kernels whose parameters came from the database
    _deadline: float | None = None
    _reused_keys: set[str] = field(default_factory=set)  # a kernel shared by several functions counts once

    def start(self) -> None:
        if self.budget_s is not None:
            self._deadline = time.perf_counter() + self.budget_s

    def params(self, kind: str, shape: str, candidates: dict[str, list[dict[str, Any]]],
               measure: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
        """The parameters to use for kernel `kind` at `shape`: remembered, or searched now, or {} (defaults)."""
        key = f"{kind}|{shape}|{self.cpu}"
        if key in self.database.entries:
            if key not in self._reused_keys:
                self._reused_keys.add(key)
                self.reused += 1
            return dict(self.database.entries[key]["params"])
        if self._deadline is None or time.perf_counter() > self._deadline:
            return {}
        self.log(f"tuning {kind} {shape} ...")
        default_us = measure({})
        best, best_us = {}, default_us
        for params in candidates["grid"]:
            if time.perf_counter() > self._deadline:
                self.log("tuning budget spent; remaining kernels keep their defaults")
                return best
            us = measure(params)
            if us < best_us * (1 - MIN_GAIN) and us < best_us:
                best, best_us = params, us
        self.database.entries[key] = {"params": best, "us": round(best_us, 2), "default_us": round(default_us, 2)}
        self.database.save()
        self.tuned.append({"kernel": kind, "shape": shape, "params": best, "us": round(best_us, 2),
                           "default_us": round(default_us, 2)})
        return best


def time_kernel(func: Any, target: Any, make_args: Callable[[], list[Any]], calls: int = 20) -> float:
    """Median microseconds of `func` (a PrimFunc) built alone for `target`, on fresh arguments."""
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    args = [tvm.runtime.tensor(a) for a in make_args()]
    kernel = lib["main"]
    kernel(*args)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        kernel(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)
