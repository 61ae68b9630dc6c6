"""What this host's CPU can run: its ISA extensions, from /proc/cpuinfo (LLVM's view where there is none)."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def host_features() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import tvm
    from tvm.target import codegen

    system = tvm.target.Target({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())})
    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(system))


ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
SYS_ARCH_PRCTL = 158  # x86-64


@functools.cache
def request_amx() -> bool:
    """Ask Linux for the AMX tile state for this process (once); code using AMX tiles dies with SIGILL
    without it. False where the OS refuses (or is not x86-64 Linux): callers then must not run AMX code."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


DEFAULT_LLC_BYTES = 32 << 20  # where the OS does not say


@functools.cache
def last_level_cache_bytes() -> int:
    """The size of this host's last-level data cache (per core complex, as Linux reports it for cpu0)."""
    best_level, size = -1, 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or level < best_level or not text:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        try:
            best_level, size = level, int(text.rstrip("KMG")) * scale
        except ValueError:
            continue
    return size or DEFAULT_LLC_BYTES
