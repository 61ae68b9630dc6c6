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


def release_pages(array: np.ndarray, start: int, count: int) -> None:
    """Drop elements [start, start + count) of a memory-mapped 1-D array from this process's page tables
    (MADV_DONTNEED; the file's pages stay in the page cache): a pass reading a spilled GB buffer chunk by
    chunk then does not keep it all mapped (peak RSS). Anything else: nothing to do."""
    import mmap

    mapping = getattr(array, "_mmap", None)
    # read-only maps only: dropping pages of a copy-on-write map would lose what was written to them
    if mapping is None or getattr(array, "mode", None) != "r" or count <= 0 or not hasattr(mapping, "madvise"):
        return
    base = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap's mapping starts
    lo = array.offset - base + start * array.itemsize
    hi = min(lo + count * array.itemsize, len(mapping))
    lo = lo // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def chunked(array: np.ndarray, elements: int = 1 << 24) -> Iterable[tuple[int, np.ndarray]]:
    """(start, array[start:start + elements]) over a 1-D array, each chunk's pages released (release_pages)
    once the consumer moves on."""
    for start in range(0, len(array), elements):
        yield start, array[start:start + elements]
        release_pages(array, start, min(elements, len(array) - start))
