"""`recc bench --recc-target`: recc's systems compile for the named target (e.g. an AVX2-only CPU's code on
an AVX-512 host) and the reproducing command says so; the peers are untouched."""

from __future__ import annotations

from recc.bench.harness import BenchConfig, config_from_argv
from recc.bench.systems import Inductor, Recc, make_system


def _config(*argv: str) -> BenchConfig:
    return config_from_argv(list(argv))


def test_recc_target_reaches_recc_systems_and_the_command() -> None:
    config = _config("--models", "wnd", "--systems", "recc,recc-int8", "--recc-target", "cpu:haswell")
    assert config.recc_target == "cpu:haswell" and config.command.endswith("--recc-target cpu:haswell")
    assert "--recc-target" not in _config("--models", "wnd").command  # the default (this host) is implicit
    for name in ("recc", "recc-int8", "recc-bf16"):
        system = make_system(name, recc_target="cpu:haswell")
        assert isinstance(system, Recc) and system.target == "cpu:haswell"
    assert make_system("recc").target == "cpu"
    assert isinstance(make_system("inductor", recc_target="cpu:haswell"), Inductor)
