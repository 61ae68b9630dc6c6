"""Query sizes and synthetic inputs for the load generator: the distributions' ranges, and the refusals
when the metadata cannot tell what a valid input is. No server, no compile."""

from __future__ import annotations

import numpy as np
import pytest

from recc.runtime.query_sizes import parse_sizes
from recc.runtime.synthetic import SyntheticInputError, synthetic_inputs


def test_sizes_stay_in_range_and_repeat_with_the_seed() -> None:
    deeprecsys = parse_sizes("deeprecsys").sample(np.random.default_rng(0), 20_000)
    assert deeprecsys.min() >= 1 and deeprecsys.max() == 1000  # heavy tail up to the cap
    assert 80 <= np.median(deeprecsys) <= 120
    assert (parse_sizes("fixed:64").sample(np.random.default_rng(0), 5) == 64).all()
    a, b = (parse_sizes("lognormal:5.1,0.2").sample(np.random.default_rng(1), 100) for _ in range(2))
    assert (a == b).all() and a.max() <= 1024


def test_empirical_sizes_from_a_file(tmp_path) -> None:
    path = tmp_path / "sizes.txt"
    path.write_text("3\n7\n")
    assert set(parse_sizes(f"file:{path}").sample(np.random.default_rng(0), 50).tolist()) == {3, 7}


@pytest.mark.parametrize("spec", ["fixed:0", "lognormal:1", "gamma:2", "file:/nonexistent"])
def test_bad_size_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="query sizes"):
        parse_sizes(spec)


def _metadata(datatype: str, limits: list, dims: list) -> dict:
    return {"name": "m", "parameters": {"batch_symbol": "batch", "offsets_checked": []},
            "inputs": [{"name": "x", "datatype": datatype, "parameters": {"dims": dims, "id_limits": limits}}]}


def test_ids_stay_within_each_tables_rows() -> None:
    batch = {"coef": 1, "symbols": ["batch"]}
    ids = synthetic_inputs(_metadata("INT64", [[1, 0, 1, 3], [1, 1, 2, 50]], [batch, 2]), 500,
                           np.random.default_rng(0))["x"]
    assert ids.shape == (500, 2) and ids[:, 0].max() == 2 and ids[:, 1].max() <= 49 and ids.min() >= 0


def test_what_cannot_be_made_valid_is_refused() -> None:
    batch = {"coef": 1, "symbols": ["batch"]}
    with pytest.raises(SyntheticInputError, match="checks no id range"):
        synthetic_inputs(_metadata("INT64", [], [batch]), 2, np.random.default_rng(0))
    with pytest.raises(SyntheticInputError, match="is not the batch"):
        synthetic_inputs(_metadata("FP32", [], [batch, {"coef": 1, "symbols": ["seq"]}]), 2, np.random.default_rng(0))
