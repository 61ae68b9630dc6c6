"""Compilation targets: a CPU target always names its CPU (TVM's "native" silently builds generic
x86-64 without AVX2), and records what it was built for so an artifact can refuse a mismatched host."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TargetSpec:
    kind: str  # "cpu" | "cuda"
    mcpu: str = ""
    num_cores: int = 1
    arch: str = ""

    def to_tvm(self) -> Any:
        import tvm

        if self.kind == "cpu":
            return tvm.target.Target({"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_cores})
        return tvm.target.Target({"kind": "cuda", "arch": self.arch})

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def host_cpu() -> str:
    import tvm

    return str(tvm.target.codegen.llvm_get_system_cpu())


def resolve_target(name: str | TargetSpec) -> TargetSpec:
    if isinstance(name, TargetSpec):
        return name
    if name in ("cpu", "llvm"):
        return TargetSpec("cpu", mcpu=host_cpu(), num_cores=os.cpu_count() or 1)
    if name.startswith("cpu:"):
        return TargetSpec("cpu", mcpu=name.split(":", 1)[1], num_cores=os.cpu_count() or 1)
    if name in ("cuda", "gpu"):
        raise ValueError("target 'cuda' is not implemented yet (tracked as a later issue); use target='cpu'")
    raise ValueError(f"unknown target {name!r}; expected 'cpu', 'cpu:<llvm cpu name>'")


def isa_features(target: TargetSpec) -> tuple[str, ...]:
    """The ISA extensions (artifact.ISA_FEATURES) LLVM may use for this CPU target: a host must have them."""
    if target.kind != "cpu":
        return ()
    from tvm.target import codegen

    from recc.compiler.artifact import ISA_FEATURES

    have = {str(f) for f in codegen.llvm_get_cpu_features(target.to_tvm())}
    return tuple(f for f in ISA_FEATURES if f in have)
