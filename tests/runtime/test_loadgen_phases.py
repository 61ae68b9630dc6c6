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


def test_a_recorded_trace_is_read_and_bad_lines_are_refused_naming_them(tmp_path) -> None:
    from recc.runtime.loadgen import read_trace

    good = tmp_path / "trace.txt"
    good.write_text("# seconds items\n0.0 3\n0.25 120\n0.25 1  # two at once\n1.5 40\n")
    offsets, sizes = read_trace(str(good))
    np.testing.assert_array_equal(offsets, [0.0, 0.25, 0.25, 1.5])
    np.testing.assert_array_equal(sizes, [3, 120, 1, 40])
    assert LoadConfig("http://x", "m", trace=str(good)).total_s == 1.5
    only_times = tmp_path / "times.txt"
    only_times.write_text("0\n0.1\n")
    assert read_trace(str(only_times))[1] is None
    for text, where in (("0 1\n0.5 0\n", ":2:"), ("1.0\n0.5\n", ":2:"), ("x\n", ":1:"), ("0 1 2\n", ":1:"),
                        ("0 1\n0.5\n", "every line or on none"), ("# nothing\n", "no queries")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=where):
            read_trace(str(bad))
