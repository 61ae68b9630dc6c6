"""`recc loadgen --phases`: piecewise Poisson arrivals (an overload burst) and per-request records; no server."""

from __future__ import annotations

import numpy as np
import pytest

from recc.cli import build_parser
from recc.runtime.loadgen import LoadConfig, Outcome, plan_arrivals, summarize


def test_phases_give_each_piece_its_rate_in_order() -> None:
    config = LoadConfig("http://x", "m", phases=((100.0, 10.0), (300.0, 5.0), (100.0, 10.0)))
    offsets = plan_arrivals(config, np.random.default_rng(0))
    assert config.total_s == 25.0 and np.all(np.diff(offsets) > 0) and 0 <= offsets[0] and offsets[-1] < 25
    counts = [np.count_nonzero((offsets >= lo) & (offsets < hi)) for lo, hi in ((0, 10), (10, 15), (15, 25))]
    for count, expected in zip(counts, (1000, 1500, 1000)):  # Poisson: within 5 standard deviations
        assert abs(count - expected) < 5 * expected ** 0.5, counts
    assert len(plan_arrivals(LoadConfig("http://x", "m", phases=config.phases, max_requests=7),
                             np.random.default_rng(0))) == 7
    plain = LoadConfig("http://x", "m", qps=50, duration_s=2)  # without phases: as before
    np.testing.assert_array_equal(plan_arrivals(plain, np.random.default_rng(1)),
                                  plan_arrivals(LoadConfig("http://x", "m", qps=50, duration_s=2), np.random.default_rng(1)))


def test_records_and_offered_rate_over_all_phases() -> None:
    config = LoadConfig("http://x", "m", phases=((10.0, 1.0), (20.0, 1.0)), record_requests=True)
    outcomes = [Outcome(3, 100.5, 100.51, 200, None), Outcome(1, 101.2, 101.2005, 429, "busy")]
    results = summarize(config, 100.0, outcomes, [])
    assert results["offered_qps"] == 1.0 and results["refused"] == 1
    assert results["requests"] == [[0.5, 10.0, 200, 3], [1.2, 0.5, 429, 1]]
    assert "requests" not in summarize(LoadConfig("http://x", "m"), 100.0, outcomes, [])


def test_cli_parses_phases() -> None:
    args = build_parser().parse_args(["loadgen", "http://x", "--model", "m", "--phases", "50:10,100:60", "--record-requests"])
    assert args.phases == ((50.0, 10.0), (100.0, 60.0)) and args.record_requests
    with pytest.raises(SystemExit):
        build_parser().parse_args(["loadgen", "http://x", "--model", "m", "--phases", "50"])
