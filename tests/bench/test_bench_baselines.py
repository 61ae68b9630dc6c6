"""The stronger baselines of `recc bench`: inductor-max (torch.compile with max_autotune and freezing) and the
thread-pool policies (`--spin off|on|both`). Configuration only, plus one small compile; no timings."""

from __future__ import annotations

import os

import pytest
import torch

from recc.bench.harness import BenchConfig, config_from_argv
from recc.bench.policies import (base_system, best_policy_lines, entries, entry_policy, environment_applied,
                                 policy_environment, policy_facts, worker_context)
from recc.bench.systems import SYSTEMS, InductorMax, OnnxRuntime, make_system


def _config(*argv: str) -> BenchConfig:
    return config_from_argv(list(argv))


def test_spin_both_parses_and_reaches_the_command_and_the_entries() -> None:
    config = _config("--models", "wnd", "--systems", "eager,ort-best,recc", "--spin", "both")
    assert config.spin == "both" and config.command.endswith("--spin both")
    assert entries(config.systems, config.spin) == (
        "eager", "eager+spin", "ort-best", "ort-best+spin", "recc", "recc+spin")
    assert [entry_policy(e) for e in ("recc", "recc+spin")] == ["off", "on"]
    assert base_system("ort-best+spin") == "ort-best"
    default = _config("--models", "wnd")
    assert default.spin == "off" and "--spin" not in default.command  # the default run is unchanged
    assert entries(default.systems, default.spin) == default.systems
    with pytest.raises(SystemExit):
        _config("--models", "wnd", "--spin", "sometimes")


def test_spin_reaches_the_systems_and_their_environment() -> None:
    assert make_system("ort-best").allow_spinning is False  # today's default: ORT does not spin
    for name in ("ort", "ort-best", "ort-int8"):
        system = make_system(name, spin="on")
        assert isinstance(system, OnnxRuntime) and system.allow_spinning is True
    off, on = policy_environment(2, "off"), policy_environment(2, "on")
    assert off["GOMP_SPINCOUNT"] == "20000" and off["TVM_THREAD_POOL_SPIN_COUNT"] == "1000"
    assert on["GOMP_SPINCOUNT"] is None and on["TVM_THREAD_POOL_SPIN_COUNT"] is None  # library defaults
    assert on["OMP_NUM_THREADS"] == off["OMP_NUM_THREADS"] == "2"
    assert worker_context("on", []).get_start_method() == "spawn"
    assert worker_context("off", []).get_start_method() == "forkserver"
    before = os.environ.get("GOMP_SPINCOUNT")
    with environment_applied({"GOMP_SPINCOUNT": None, "RECC_TEST_VARIABLE": "1"}):
        assert "GOMP_SPINCOUNT" not in os.environ and os.environ["RECC_TEST_VARIABLE"] == "1"
    assert os.environ.get("GOMP_SPINCOUNT") == before and "RECC_TEST_VARIABLE" not in os.environ
    assert "allow_spinning=1" in policy_facts("ort-best", "on", 2)["pool"]
    assert "TVM" in policy_facts("recc", "off", 2)["pool"] and "note" in policy_facts("eager", "on", 1)


def test_best_policy_table_picks_the_faster_matching_policy() -> None:
    def cell(system: str, median: float, status: str = "ok") -> dict:
        return {"model": "wnd", "batch": 1, "system": system, "median_us": median, "status": status}

    results = {"config": {"spin": "both", "models": ["wnd"], "batches": [1], "systems": ["eager", "ort-best"]},
               "cells": [cell("eager", 100.0), cell("eager+spin", 120.0), cell("ort-best", 50.0),
                         cell("ort-best+spin", 40.0)]}
    rows = [line for line in best_policy_lines(results) if line.startswith("| wnd")]
    assert rows == ["| wnd | 1 | eager | 100.0 | 120.0 | off | 100.0 | 1.00x |",
                    "| wnd | 1 | ort-best | 50.0 | 40.0 | on | 40.0 | 2.50x |"]
    assert best_policy_lines({**results, "config": {**results["config"], "spin": "off"}}) == []


def test_inductor_max_is_max_autotune_with_freezing_and_matches_eager() -> None:
    from recc.models import create

    assert "inductor-max" in SYSTEMS and "inductor" in SYSTEMS
    system = make_system("inductor-max")
    assert isinstance(system, InductorMax)
    model = create("ncf", scale=0.001, seed=0)
    with torch.inference_mode():
        facts = system.setup(model, threads=1)
        assert facts["max_autotune"] is True and facts["freezing"] is True
        assert "max_autotune" in facts["mode"] and "freezing" in facts["mode"]
        inputs = model.example_inputs(2, seed=1)
        call = system.prepare(inputs)  # compiles (and autotunes) this batch size
        output, expected = system.to_numpy(call()), model(*inputs).numpy()
    assert abs(output - expected).max() <= 1e-5
    cell = system.cell_facts()
    assert cell["configuration"] in ("max_autotune+freezing", "freezing") and cell["compile_s"] > 0
