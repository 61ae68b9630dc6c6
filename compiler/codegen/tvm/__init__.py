"""recc's TVM backend: IR -> Relax (with recc's own scheduled TIR kernels) -> compiled library."""

from .build import build_library
from .target import TargetSpec, host_cpu, resolve_target

__all__ = ["build_library", "TargetSpec", "host_cpu", "resolve_target"]
