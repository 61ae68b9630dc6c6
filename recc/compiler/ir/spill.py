"""Large parameters that passes build from pieces (batch-embedding-bags' flat table buffer: every table
of a model, gigabytes at DeepRecSys's sizes) streamed straight into an .npy file and memory-mapped,
never held as a second in-memory copy of the tables they come from.

A graph with a `spill_dir` (compile_graph gives each compilation one, inside the artifact's temporary
directory) writes such a parameter there; the artifact writer then links the file into `weights/`
instead of writing it again (artifact.write_weights). Without one (a graph optimized on its own), the
pieces are concatenated in memory as before."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

SPILL_BYTES = 1 << 24  # 16 MiB: a smaller flat parameter is concatenated in memory


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy header (format 1.0, padded so the data starts 64-byte aligned) of a C-order array."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def stream_npy(path: Path, parts: Iterable[np.ndarray], dtype: np.dtype, count: int) -> np.memmap:
    """Write the 1-D concatenation of `parts` (each flattened, cast to `dtype` one part at a time) to the
    .npy file `path` with plain file writes (page cache, not this process's memory), and return it
    memory-mapped read-only: pages come in as a reader touches them."""
    dtype = np.dtype(dtype)
    written = 0
    with open(path, "wb") as f:
        f.write(npy_header(dtype, (count,)))
        for part in parts:
            flat = np.ascontiguousarray(part, dtype).reshape(-1)  # no copy for a contiguous part of `dtype`
            f.write(memoryview(flat).cast("B"))
            written += flat.size
    if written != count:
        raise ValueError(f"{path}: {written} elements written, {count} declared")
    return np.load(path, mmap_mode="r", allow_pickle=False)
