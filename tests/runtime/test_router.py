"""Two compiled variants of one model behind one name, routed by query size (DeepRecSched's offload
threshold): the server sends each request to the variant its size selects, and `tune_threshold`
searches the threshold by measurement. The variants here are the same model with different weights, so
the outputs show which one ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import recc
from recc.runtime.router import check_same_signature
from recc.runtime.server import ServeConfig, ServerThread, create_app, load_models
from recc.serving import Client
from tests.runtime.test_server import MODEL, _inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def routed(artifact: Path, other_artifact: Path) -> Iterator[str]:
    config = ServeConfig(sla_ms=None, max_delay_ms=1, variant=str(other_artifact), variant_threshold=16)
    with ServerThread(create_app(load_models([f"{MODEL}={artifact}"]), config)) as running:
        yield running.url


def test_requests_go_to_the_variant_their_size_selects(routed: str, artifact: Path, other_artifact: Path) -> None:
    small, large = recc.load(artifact), recc.load(other_artifact)
    with Client(routed) as client:
        for rows, expected in ((1, small), (16, small), (17, large), (90, large)):
            inputs = _inputs(rows, rows)
            (out,) = client.infer(MODEL, *inputs)
            np.testing.assert_allclose(out, expected(*inputs).numpy(), rtol=1e-6, atol=1e-7)
            other = large if expected is small else small
            assert not np.allclose(out, other(*inputs).numpy(), rtol=1e-6, atol=1e-7)


def test_variants_must_share_a_signature() -> None:
    def fake(shape: tuple[Any, ...], path: str) -> Any:
        tensor = SimpleNamespace(name="x", dtype="float32", shape=shape)
        return SimpleNamespace(manifest=SimpleNamespace(inputs=[tensor], outputs=[tensor]), path=path)

    check_same_signature(fake((4, 8), "a"), fake((4, 8), "b"))
    with pytest.raises(ValueError, match="same tensors: a has"):
        check_same_signature(fake((4, 8), "a"), fake((4, 9), "b"))


def test_tune_threshold_measures_the_ladder(artifact: Path, other_artifact: Path) -> None:
    from recc.runtime.drive import Routed, artifact_deployment
    from recc.runtime.query_sizes import parse_sizes
    from recc.runtime.tune import Objective, tune_threshold

    routed = Routed(artifact_deployment(MODEL, str(artifact), 0, 1), artifact_deployment(MODEL, str(other_artifact), 0, 1), 0)
    objective = Objective(sla_ms=50, duration_s=0.2, min_queries=20, max_duration_s=1.0, refine=1, max_steps=3)
    lines: list[str] = []
    try:
        found = tune_threshold(routed, parse_sizes("lognormal:2.5,0.8"), objective, say=lines.append)
    finally:
        routed.close()
    visited = [point["threshold"] for point in found["threshold_curve"]]
    assert visited and set(visited) <= {4, 8, 16, 32, 64, 128, 256, 512, 1024}
    assert found["variant_threshold"] in visited and found["max_qps"] == max(p["max_qps"] for p in found["threshold_curve"])
    assert found["offloads"] == (found["variant_threshold"] < 1024)
    assert any("threshold" in line for line in lines)
