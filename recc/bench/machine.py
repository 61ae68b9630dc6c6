"""The machine and software a benchmark ran on, as plain values for results.json."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPORTED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
                  "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
                  "amx_fp16")
PACKAGES = ("torch", "apache-tvm", "apache-tvm-ffi", "onnxruntime", "onnx", "onnxscript", "numpy", "recc",
            "matplotlib")


def describe_machine() -> dict[str, Any]:
    cpuinfo = _cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    return {
        "cpu_model": cpuinfo.get("model name", platform.processor() or platform.machine()),
        "logical_cores": os.cpu_count(),
        "cores_available_to_process": len(os.sched_getaffinity(0)),
        "cpu_flags": [flag for flag in REPORTED_FLAGS if flag in flags],
        "llvm_cpu": _llvm_cpu(),
        "memory_gib": round(_mem_total_kib() / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],  # other work on the machine at the start  # uncommitted changes to tracked files when the run started
    }


def _cpuinfo() -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            facts.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return facts


def _mem_total_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _llvm_cpu() -> str | None:
    try:
        import tvm

        return str(tvm.target.codegen.llvm_get_system_cpu())
    except Exception:  # noqa: BLE001 - a description, not a requirement
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_dirty() -> bool | None:
    try:
        root = Path(__file__).resolve().parents[2]
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=False)
        return bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
        return commit or None
    except (OSError, subprocess.SubprocessError):
        return None
