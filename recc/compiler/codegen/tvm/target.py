"""Compilation targets: a CPU target always names its CPU (TVM's "native" silently builds generic
x86-64 without AVX2) and the ISA extensions the OS reports beyond what LLVM knows of that CPU name (a VM
reporting CPU model 167 is `rocketlake` to LLVM: no AVX512-BF16, no AMX, though /proc/cpuinfo has them),
given to LLVM as `mattr`; it records what it was built for so an artifact can refuse a mismatched host.
Code for an extension the target lacks is never emitted: LLVM aborts the whole process on it."""

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
    mattr: tuple[str, ...] = ()  # LLVM features added to the CPU name's, e.g. ("+amx-int8", "+avx512bf16")

    def to_tvm(self) -> Any:
        import tvm

        if self.kind == "cpu":
            config: dict[str, Any] = {"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_cores}
            if self.mattr:
                config["mattr"] = list(self.mattr)  # a list: a comma-joined string raises
            return tvm.target.Target(config)
        return tvm.target.Target({"kind": "cuda", "arch": self.arch})

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, mattr=list(self.mattr))

    def has(self, *features: str) -> bool:
        """Whether LLVM may use all these ISA extensions (LLVM's names, e.g. "amx-int8") on this target."""
        return self.kind == "cpu" and all(f in _llvm_features(self) for f in features)


def host_cpu() -> str:
    import tvm

    return str(tvm.target.codegen.llvm_get_system_cpu())


# /proc/cpuinfo flag -> LLVM feature, for the extensions recc's kernels use that LLVM's CPU name may miss
OS_TO_LLVM = {"avx512_vnni": "avx512vnni", "avx512_bf16": "avx512bf16", "avx512_fp16": "avx512fp16",
              "avx_vnni": "avxvnni", "amx_tile": "amx-tile", "amx_int8": "amx-int8", "amx_bf16": "amx-bf16"}


def host_mattr(mcpu: str) -> tuple[str, ...]:
    """The extensions this host's OS reports that LLVM's `mcpu` lacks, as mattr entries ("+amx-int8")."""
    from tvm.target import codegen

    from recc.compiler.host import host_features

    import tvm

    known = {str(f) for f in codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))}
    have = host_features()
    return tuple(f"+{llvm}" for flag, llvm in OS_TO_LLVM.items() if flag in have and llvm not in known)


def resolve_target(name: str | TargetSpec) -> TargetSpec:
    if isinstance(name, TargetSpec):
        return name
    if name in ("cpu", "llvm"):
        mcpu = host_cpu()
        return TargetSpec("cpu", mcpu=mcpu, num_cores=os.cpu_count() or 1, mattr=host_mattr(mcpu))
    if name.startswith("cpu:"):
        return TargetSpec("cpu", mcpu=name.split(":", 1)[1], num_cores=os.cpu_count() or 1)
    if name in ("cuda", "gpu"):
        raise ValueError("target 'cuda' is not implemented yet (tracked as a later issue); use target='cpu'")
    raise ValueError(f"unknown target {name!r}; expected 'cpu', 'cpu:<llvm cpu name>'")


def isa_features(target: TargetSpec) -> tuple[str, ...]:
    """The ISA extensions (artifact.ISA_FEATURES) LLVM may use for this CPU target: a host must have them."""
    if target.kind != "cpu":
        return ()
    from recc.compiler.artifact import ISA_FEATURES

    have = _llvm_features(target)
    return tuple(f for f in ISA_FEATURES if f in have)


def _llvm_features(target: TargetSpec) -> frozenset[str]:
    from tvm.target import codegen

    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(target.to_tvm()))
