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
