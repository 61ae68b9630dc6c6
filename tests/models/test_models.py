"""The eight models: sizes against models.md, inputs, outputs, export with a symbolic batch.

Everything runs at SCALE = 0.001 (tables of 28 to 10,000 rows) so the file takes seconds.
The expected sizes below are written out from docs/models.md, not read from the code, so
a drifting width or row count fails here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import torch
from recc.models import inputs

from recc import models

SCALE = 0.001
EXPORT_BATCH = 4
EXPORT_TOLERANCE = 1e-6  # fp32, same kernels in eager and in the exported program
SOFTMAX_TOLERANCE = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread() -> Iterator[None]:
    """These graphs are hundreds of tiny ops; on 2 cores each pays a thread-pool wake-up (15x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Case:
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return self.name + "".join(f"-{key}={value}" for key, value in self.options)


DEFAULTS = [Case(name) for name in models.names()]
# Every option of every model. DIEN's variants run at a short sequence: export unrolls both
# recurrences and costs ~10 ms per traced op; the default DIEN is exported at full length.
VARIANTS = [
    Case("dlrm-rmc1", (("interaction", "cat"),)),
    Case("dlrm-rmc2", (("interaction", "cat"),)),
    Case("dlrm-rmc3", (("interaction", "cat"),)),
    Case("ncf", (("variant", "deeprecsys"),)),
    Case("wnd", (("variant", "deeprecsys"),)),
    Case("mt-wnd", (("heads", 1),)),
    Case("din", (("variant", "deeprecsys"),)),
    Case("din", (("sequence_length", 7),)),
    Case("dien", (("variant", "deeprecsys"), ("sequence_length", 6))),
    Case("dien", (("gru_impl", "nn"), ("sequence_length", 6))),
]
ALL_CASES = DEFAULTS + VARIANTS
# Export tracing is pure Python, ~10 ms per op: export each distinct forward path once. RMC2/RMC3
# with interaction="cat" run RMC1's "cat" code, heads=1 runs the heads=3 loop, and DIN's
# sequence_length only changes a static length; their eager outputs are still tested.
EXPORT_CASES = DEFAULTS + [
    case
    for case in VARIANTS
    if case.name not in ("dlrm-rmc2", "dlrm-rmc3", "mt-wnd") and case.options != (("sequence_length", 7),)
]

# (rows, dim) of every table at scale 1.0, in info() order, from models.md.
FULL_TABLES: dict[str, list[tuple[int, int]]] = {
    "dlrm-rmc1": [(4_000_000, 32)] * 8,
    "dlrm-rmc2": [(500_000, 64)] * 32,
    "dlrm-rmc3": [(2_000_000, 32)] * 10,
    "ncf": [(140_000, 64)] * 2 + [(28_000, 64)] * 2,
    "wnd": [(1_000_000, 32)] * 27 + [(1_000_000, 1)] * 27,
    "mt-wnd": [(500_000, 32)] * 41 + [(5_000_000, 32)] * 2,
    "din": [(1_000_000, 32), (100_000, 32), (10_000_000, 32), (10_000_000, 32)],
    "dien": [(500_000, 32)] * 41 + [(5_000_000, 32)] * 2,
}

# Input shapes after the batch dim, in forward order, for the default options.
INPUT_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "dlrm-rmc1": [(128,), (8, 80)],
    "dlrm-rmc2": [(256,), (32, 120)],
    "dlrm-rmc3": [(2560,), (10, 20)],
    "ncf": [(4, 1)],
    "wnd": [(512,), (27, 1)],
    "mt-wnd": [(512,), (43, 1)],
    "din": [(3,), (50,), (50,), (1,), (3,)],
    "dien": [(1,), (40,), (40,), (1,), (1,)],
}


def mlp_params(*widths: int) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in pairwise(widths))


def gru_params(input_size: int, hidden: int) -> int:
    return 3 * hidden * (input_size + hidden) + 2 * 3 * hidden


# Parameters outside the embedding tables, from the widths in models.md.
DENSE_PARAMS: dict[str, int] = {
    # dot interaction: bottom width + (T+1)T/2 pairs feeds the top MLP
    "dlrm-rmc1": mlp_params(128, 64, 32) + mlp_params(32 + 36, 256, 64, 1),
    "dlrm-rmc2": mlp_params(256, 128, 64) + mlp_params(64 + 528, 128, 64, 1),
    "dlrm-rmc3": mlp_params(2560, 1024, 256, 32) + mlp_params(32 + 55, 512, 256, 1),
    "ncf": mlp_params(128, 256, 256, 128, 64) + mlp_params(128, 1),
    "wnd": mlp_params(1376, 1024, 512, 256, 1) + 512,
    "mt-wnd": mlp_params(1888, 1024, 512) + 3 * mlp_params(512, 256, 128, 1),
    "din": mlp_params(128, 80, 40, 1) + mlp_params(128, 200, 80, 2),
    "dien": gru_params(32, 64) + 32 * 64 + gru_params(64, 64) + mlp_params(160, 200, 80, 2),
}


@cache
def build(case: Case) -> models.RecModel:
    return models.create(case.name, scale=SCALE, **dict(case.options))


def output_contract(case: Case) -> tuple[int, str]:
    """(output width, kind): kind is 'probability', 'softmax' or 'relu'."""
    options = dict(case.options)
    if case.name in ("din", "dien"):
        return 2, "softmax"
    if case.name == "ncf" and options.get("variant") == "deeprecsys":
        return 64, "relu"
    if case.name == "mt-wnd":
        return options.get("heads", 3), "probability"
    return 1, "probability"


def ids_of_table(
    model: models.RecModel, example: tuple[torch.Tensor, ...], table: models.TableInfo
) -> torch.Tensor:
    ids = example[model.input_names.index(table.input_name)]
    return ids if table.input_column is None else ids[:, table.input_column]


def test_names_are_the_eight_models() -> None:
    assert models.names() == [
        "dlrm-rmc1", "dlrm-rmc2", "dlrm-rmc3", "ncf", "wnd", "mt-wnd", "din", "dien"
    ]  # fmt: skip


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_model_is_frozen_fp32_in_eval_mode(case: Case) -> None:
    model = build(case)
    assert isinstance(model, models.RecModel)
    assert not any(module.training for module in model.modules())
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("batch", [1, 7])
def test_example_inputs_have_documented_shapes(name: str, batch: int) -> None:
    model = build(Case(name))
    example = model.example_inputs(batch)
    assert len(example) == len(model.input_names)
    assert [tuple(x.shape) for x in example] == [(batch, *shape) for shape in INPUT_SHAPES[name]]
    for input_name, tensor in zip(model.input_names, example, strict=True):
        is_float = input_name in ("dense", "behaviour_mask")
        assert tensor.dtype == (torch.float32 if is_float else torch.int64), input_name


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("batch", [1, 7])
def test_output_shape_and_range(case: Case, batch: int) -> None:
    model = build(case)
    with torch.no_grad():
        output = model(*model.example_inputs(batch, seed=3))
    width, kind = output_contract(case)
    assert isinstance(output, torch.Tensor)
    assert output.shape == (batch, width)
    assert output.dtype == torch.float32
    assert torch.isfinite(output).all()
    assert output.min() >= 0.0
    if kind in ("probability", "softmax"):
        assert output.max() <= 1.0
    if kind == "softmax":
        assert torch.allclose(output.sum(dim=1), torch.ones(batch), atol=SOFTMAX_TOLERANCE)
    if batch > 1:
        assert output.std(dim=0).max() > 0, "every sample scored the same"


@pytest.mark.slow  # torch.export (and ONNX Runtime) of every model: tens of seconds
@pytest.mark.parametrize("case", EXPORT_CASES, ids=lambda c: c.id)
def test_export_with_dynamic_batch_matches_eager(case: Case) -> None:
    model = build(case)
    program = torch.export.export(
        model, model.example_inputs(EXPORT_BATCH), dynamic_shapes=model.batch_dynamic_shapes()
    )
    exported = program.module()
    for batch in (1, 9):
        example = model.example_inputs(batch, seed=batch)
        with torch.no_grad():
            error = (exported(*example) - model(*example)).abs().max().item()
        assert error <= EXPORT_TOLERANCE, f"batch {batch}: max abs error {error}"


@pytest.mark.parametrize("name", models.names())
def test_info_matches_models_md_and_the_parameters(name: str) -> None:
    model = build(Case(name))
    info = model.info()
    parameters = dict(model.named_parameters())
    assert info.name == name and info.scale == SCALE and info.notes
    expected = [(max(1, round(rows * SCALE)), dim) for rows, dim in FULL_TABLES[name]]
    assert [(table.rows, table.dim) for table in info.tables] == expected
    for table in info.tables:
        assert tuple(parameters[table.name].shape) == (table.rows, table.dim)
    assert info.param_count == sum(p.numel() for p in parameters.values())
    assert info.param_bytes == 4 * info.param_count
    assert info.param_count - sum(t.rows * t.dim for t in info.tables) == DENSE_PARAMS[name]
    assert info.dense_in == (INPUT_SHAPES[name][0][0] if "dense" in model.input_names else 0)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_ids_lie_within_their_tables(case: Case) -> None:
    model = build(case)
    example = model.example_inputs(64, seed=5)
    for table in model.info().tables:
        ids = ids_of_table(model, example, table)
        assert (ids.shape[1] if ids.dim() == 2 else 1) == table.pooling, table.name
        assert int(ids.min()) >= 0 and int(ids.max()) < table.rows, table.name


@pytest.mark.parametrize("name", models.names())
def test_inputs_reproducible_per_seed_and_different_across_seeds(name: str) -> None:
    model = build(Case(name))
    first, again, other = (model.example_inputs(16, seed=s) for s in (11, 11, 12))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    for input_name, a, b in zip(model.input_names, first, other, strict=True):
        assert not torch.equal(a, b), input_name


@pytest.mark.parametrize("name", ["din", "dien"])
def test_behaviour_sequences_are_padded_after_their_valid_length(name: str) -> None:
    model = build(Case(name))
    example = dict(zip(model.input_names, model.example_inputs(256, seed=2), strict=True))
    ids, mask = example["behaviour_ids"], example["behaviour_mask"]
    lengths = mask.sum(dim=1)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert lengths.min() >= 1 and lengths.max() == mask.shape[1]
    assert torch.equal(mask, (torch.arange(mask.shape[1]) < lengths[:, None]).float())
    assert (ids[mask == 0] == 0).all()


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.name in ("din", "dien")], ids=lambda c: c.id)
def test_padded_behaviours_do_not_change_the_output(case: Case) -> None:
    model = build(case)
    example = list(model.example_inputs(32, seed=4))
    ids_index = model.input_names.index("behaviour_ids")
    mask = example[model.input_names.index("behaviour_mask")]
    table_rows = next(t.rows for t in model.info().tables if t.input_name == "behaviour_ids")
    with torch.no_grad():
        before = model(*example)
        noise = torch.randint(0, table_rows, mask.shape, generator=torch.Generator().manual_seed(0))
        example[ids_index] = torch.where(mask == 0, noise, example[ids_index])
        after = model(*example)
    assert torch.allclose(before, after, atol=1e-6, rtol=0)


def test_sparse_ids_follow_a_power_law() -> None:
    rows = 10_000
    ids = inputs.bag_ids(1000, rows, 20, seed=0, stream="sparse_ids").flatten()
    counts = torch.bincount(ids, minlength=rows)
    top_share = counts.sort(descending=True).values[: rows // 100].sum() / counts.sum()
    assert top_share > 0.3, f"top 1% of rows got {top_share:.2f} of lookups (uniform: 0.01)"
    hottest = set(counts.topk(rows // 100).indices.tolist())
    assert hottest != set(range(rows // 100)), "hot rows should be scattered, not at index 0"


def test_model_ids_are_skewed() -> None:
    model = build(Case("dlrm-rmc1"))
    sparse_ids = model.example_inputs(64)[1]
    rows = model.info().tables[0].rows
    counts = torch.bincount(sparse_ids[:, 0].flatten(), minlength=rows)
    top_share = counts.sort(descending=True).values[: rows // 100].sum() / counts.sum()
    assert top_share > 0.2


@pytest.mark.parametrize("rows", [1, 2, 97, 100, 4096, 28_000])
def test_hot_row_permutation_is_a_bijection(rows: int) -> None:
    ranks = np.arange(rows)
    assert np.array_equal(np.sort(inputs.scatter_hot_rows(ranks, rows, "t/0")), ranks)


def test_dense_features_are_uniform_unit_interval() -> None:
    dense = inputs.dense_features(512, 64, seed=1)
    assert dense.dtype == torch.float32 and dense.min() >= 0.0 and dense.max() < 1.0
    assert abs(dense.mean().item() - 0.5) < 0.02


@pytest.mark.parametrize("name", models.names())
def test_weights_reproducible_per_seed(name: str) -> None:
    first, again, other = (models.create(name, scale=SCALE, seed=s) for s in (5, 5, 6))
    for (key, a), b, c in zip(
        first.state_dict().items(),
        again.state_dict().values(),
        other.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), key
        assert not torch.equal(a, c), key


def test_embedding_and_linear_init_follow_models_md() -> None:
    model = build(Case("dlrm-rmc1"))
    table = model.tables[0].weight
    bound = math.sqrt(1.0 / table.shape[0])
    assert table.abs().max() <= bound and table.abs().max() > 0.9 * bound
    linear = model.top[0].weight
    xavier_bound = math.sqrt(6.0 / (linear.shape[0] + linear.shape[1]))
    assert linear.abs().max() <= xavier_bound and linear.abs().max() > 0.9 * xavier_bound


def test_gru_impls_compute_the_same_function() -> None:
    cells = build(Case("dien", (("sequence_length", 6),)))
    torch_gru = build(Case("dien", (("gru_impl", "nn"), ("sequence_length", 6))))
    example = cells.example_inputs(8)
    with torch.no_grad():
        assert torch.allclose(cells(*example), torch_gru(*example), atol=1e-6, rtol=0)


def test_dot_interaction_keeps_the_strict_lower_triangle() -> None:
    model = build(Case("dlrm-rmc1"))
    pairs = list(zip(model.li.tolist(), model.lj.tolist(), strict=True))
    assert pairs == [(i, j) for i in range(9) for j in range(i)]


@pytest.mark.parametrize("name", models.names())
def test_builds_at_scale_one_percent(name: str) -> None:
    model = models.create(name, scale=0.01)
    expected = [max(1, round(rows * 0.01)) for rows, _ in FULL_TABLES[name]]
    assert [table.rows for table in model.info().tables] == expected
    with torch.no_grad():
        assert torch.isfinite(model(*model.example_inputs(2))).all()


def test_create_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    models.create("ncf", scale=SCALE)
    assert torch.equal(state, torch.get_rng_state())


def test_create_rejects_unknown_names_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="dlrm-rmc1"):
        models.create("dlrm-rmc4")


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, float("nan")])
def test_create_rejects_scales_outside_the_unit_interval(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        models.create("ncf", scale=scale)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("dlrm-rmc1", {"interaction": "outer"}),
        ("ncf", {"variant": "caffe2"}),
        ("mt-wnd", {"heads": 0}),
        ("dien", {"gru_impl": "lstm"}),
        ("dien", {"variant": "deeprecsys", "gru_impl": "nn"}),
        ("din", {"sequence_length": 0}),
        ("wnd", {"heads": 2}),
    ],
)
def test_create_rejects_bad_options(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        models.create(name, scale=SCALE, **options)


def test_example_inputs_reject_empty_batches() -> None:
    with pytest.raises(ValueError, match="batch"):
        build(Case("ncf")).example_inputs(0)
