"""Memory facts and table-buffer placement for a loaded artifact (issue 20).

- `peak_rss_bytes()`: this process's peak resident set (getrusage ru_maxrss), as `recc run` and
  `recc bench` report it; `artifact_bytes(path)`: the artifact's bytes on disk.
- Table buffers (weights of `LARGE_WEIGHT_BYTES` or more) are asked for transparent huge pages
  (madvise MADV_HUGEPAGE). On the default copy-on-write file mapping Linux backs reads with page-cache
  pages, which it does not give as huge pages on most filesystems; `prefault=True` instead reads each
  table buffer into anonymous memory advised for huge pages before the first query (every page faulted in
  at load, none on the query path; huge pages where `/sys/kernel/mm/transparent_hugepage/enabled` allows).
- `huge_page_bytes(array)`: how much of an array the kernel actually backs with huge pages (AnonHugePages
  plus FilePmdMapped of its mappings in /proc/self/smaps): whether THP was granted, measured, not assumed.
"""

from __future__ import annotations

import ctypes
import mmap
import resource
from pathlib import Path
from typing import Any

import numpy as np

LARGE_WEIGHT_BYTES = 1 << 23  # 8 MiB: a table buffer, worth huge pages and a prefault
HUGE_PAGE = 1 << 21
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)
_READ_CHUNK = 1 << 26


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def artifact_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def thp_setting() -> str:
    """The kernel's THP mode ("always", "madvise", "never"), or "unavailable"."""
    try:
        text = THP_SETTING.read_text()
    except OSError:
        return "unavailable"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def _madvise(address: int, length: int, advice: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    start = address - address % mmap.PAGESIZE
    return libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length + address - start), advice) == 0


def advise_huge_pages(array: np.ndarray) -> bool:
    """Ask for transparent huge pages over `array`'s memory; False where the kernel refuses the advice."""
    return _madvise(array.ctypes.data, array.nbytes, _MADV_HUGEPAGE)


def huge_page_buffer(nbytes: int) -> np.ndarray:
    """`nbytes` of fresh anonymous memory (uint8, writeable), 2 MiB aligned, advised for huge pages before
    anything touches it (private: shared anonymous memory is shmem, which gets no THP here)."""
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    skip = -base % HUGE_PAGE
    _madvise(base + skip, nbytes, _MADV_HUGEPAGE)
    return np.frombuffer(region, np.uint8, nbytes, skip)  # keeps `region` alive


def read_huge_paged(path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """`path`'s bytes from `offset` as a writeable array in fresh anonymous memory, 2 MiB aligned and
    advised for huge pages before it is written, every page faulted in by the read itself."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    array = huge_page_buffer(nbytes)
    view = memoryview(array)
    with open(path, "rb") as f:
        f.seek(offset)
        done = 0
        while done < nbytes:
            n = f.readinto(view[done:done + _READ_CHUNK])
            if not n:
                raise EOFError(f"{path}: {nbytes - done} bytes short")
            done += n
    return array.view(dtype).reshape(shape)


def huge_page_bytes(array: np.ndarray) -> int:
    """Bytes of the mappings holding `array` that are backed by huge pages (0 where THP was not granted)."""
    lo, hi = array.ctypes.data, array.ctypes.data + array.nbytes
    total, inside = 0, False
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start < hi and end > lo
        elif inside and line.startswith(("AnonHugePages:", "FilePmdMapped:", "ShmemPmdMapped:")):
            total += int(line.split()[1]) * 1024
    return total


def memory_report(root: Path, weights: list[np.ndarray], prefaulted: bool) -> dict[str, Any]:
    """Peak RSS, the artifact's bytes on disk, and THP facts for the table buffers among `weights`."""
    large = [w for w in weights if w.nbytes >= LARGE_WEIGHT_BYTES]
    return {"peak_rss_bytes": peak_rss_bytes(), "artifact_bytes": artifact_bytes(root),
            "table_buffer_bytes": sum(int(w.nbytes) for w in large), "prefaulted": prefaulted,
            "thp_setting": thp_setting(), "huge_page_bytes": sum(huge_page_bytes(w) for w in large)}


def load_weights(root: Path, entries: Any, prefault: bool) -> list[np.ndarray]:
    """The artifact's weights: memory-mapped copy-on-write (artifact.load_weight), table buffers advised
    for huge pages; with `prefault`, table buffers read into huge-page-advised anonymous memory instead."""
    from recc.compiler.artifact import load_weight

    arrays = []
    for entry in entries:
        array = load_weight(root, entry)  # checks the header against the manifest
        if array.nbytes >= LARGE_WEIGHT_BYTES:
            if prefault:
                array = read_huge_paged(root / entry.file, array.offset, array.dtype, array.shape)
            else:
                advise_huge_pages(array)
        arrays.append(array)
    return arrays
