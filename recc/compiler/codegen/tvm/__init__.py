"""recc's TVM backend: IR -> Relax (with recc's own scheduled TIR kernels) -> compiled library."""

from recc.compiler.codegen.tvm.build import build_library
from recc.compiler.codegen.tvm.target import TargetSpec, host_cpu, resolve_target

__all__ = ["build_library", "TargetSpec", "host_cpu", "resolve_target"]
