"""Embedding kernels vs torch: first each TIR kernel on its own (compiled once per configuration and run
at several batch sizes from that one build), then through the whole pipeline (recc.compile).

Kernel level: fixed bags (sum/mean, per_sample_weights, bag sizes below/above the prefetch distance, dims
that need two passes), offsets bags (empty bags, all bags empty, include_last_offset both ways, trailing
ids after the last offset), the batched multi-table kernel (tables of different rows and dims in flat
weights, shared id columns, several segments), plain lookups; batch 1, 7, 64 and one large enough for the parallel branch; the largest valid id of every
table. fp32 max abs error <= 1e-5 on outputs of magnitude ~1.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import tvm
from recc.compiler.codegen.tvm.kernels.cpu.embedding import Segment, batched_embedding_bag, embedding_bag_fixed
from recc.compiler.codegen.tvm.kernels.cpu.embedding_offsets import embedding_bag_offsets, embedding_lookup
from recc.compiler.codegen.tvm.kernels.cpu.gather import DEFAULT_SCHEDULE, GatherSchedule
from recc.compiler.codegen.tvm.target import resolve_target

import recc
from tests.conftest import FP32_ATOL, max_abs_error

F = torch.nn.functional
BATCHES = (1, 7, 64, 500)  # 500 x bag takes the parallel branch for every bag size used here


def _batched(table_rows: tuple[int, ...], dim: int, bag: int, mode: str, weighted: bool,
             schedule: GatherSchedule = DEFAULT_SCHEDULE):
    """One segment of equal-dim tables with consecutive id columns (the DLRM layout)."""
    seg = Segment(table_rows, dim, bag, tuple(t * bag for t in range(len(table_rows))), 0, 0)
    return batched_embedding_bag((seg,), len(table_rows) * bag, mode, weighted, schedule)


@functools.cache
def _compiled(kind: str, *args) -> tvm.runtime.Module:
    builders = {"fixed": embedding_bag_fixed, "offsets": embedding_bag_offsets, "batched": _batched,
                "lookup": embedding_lookup}
    func = builders[kind](*args)
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                       target=resolve_target("cpu").to_tvm())


def _run(lib: tvm.runtime.Module, inputs: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, np.float32))  # NaN: an unwritten output fails
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs], out)
    return out.numpy()


def _table(rng: np.random.Generator, rows: int, dim: int, bag: int = 1) -> np.ndarray:
    return (rng.standard_normal((rows, dim)) / np.sqrt(max(bag, 1))).astype(np.float32)


@pytest.mark.parametrize("mode,weighted,bag,dim", [("sum", False, 80, 32), ("mean", False, 3, 16),
                                                   ("sum", True, 5, 7), ("sum", False, 1, 64),
                                                   ("mean", False, 40, 130)])  # 64 + 64 + tail 2
def test_fixed_bags_match_torch(mode: str, weighted: bool, bag: int, dim: int) -> None:
    rows = 257
    lib = _compiled("fixed", rows, dim, bag, mode, weighted)
    rng = np.random.default_rng(bag * 1000 + dim)
    table = _table(rng, rows, dim, bag)
    for batch in BATCHES:
        ids = rng.integers(0, rows, (batch, bag))
        ids[0, 0] = ids[-1, -1] = rows - 1
        weights = rng.random((batch, bag), dtype=np.float32)
        got = _run(lib, [table, ids] + ([weights] if weighted else []), (batch, dim))
        want = F.embedding_bag(torch.from_numpy(ids), torch.from_numpy(table), mode=mode,
                               per_sample_weights=torch.from_numpy(weights) if weighted else None)
        assert max_abs_error(got, want) <= FP32_ATOL, f"batch {batch}"


def _bags(rng: np.random.Generator, n_bags: int, rows: int, include_last: bool, trailing: int = 0):
    """Random offsets-form bags: the first bag and one in the middle empty, ids ending at rows - 1."""
    lengths = rng.integers(0, 5, n_bags)
    lengths[0] = 0
    lengths[n_bags // 2] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    offsets = offsets if include_last else offsets[:-1]
    ids = rng.integers(0, rows, int(lengths.sum()) + trailing)
    if len(ids):
        ids[-1 - trailing] = rows - 1
    return ids, offsets.astype(np.int64), rng.random(len(ids), dtype=np.float32)


@pytest.mark.parametrize("mode,include_last,weighted", [("sum", False, False), ("mean", False, False),
                                                        ("sum", True, True), ("mean", True, False),
                                                        ("sum", False, True)])
def test_offsets_bags_match_torch(mode: str, include_last: bool, weighted: bool) -> None:
    rows, dim = 300, 24
    lib = _compiled("offsets", rows, dim, mode, weighted, include_last)
    rng = np.random.default_rng(7)
    table = _table(rng, rows, dim, 4)
    cases = [_bags(rng, n, rows, include_last) for n in (1, 2, 7, 64, 700)]
    no_ids = np.zeros(0, np.int64)
    cases.append((no_ids, np.zeros(4 + include_last, np.int64), np.zeros(0, np.float32)))  # 4 bags, nnz = 0
    if include_last and mode == "sum":  # ids after offsets[-1] belong to no bag (torch's mean would count them
        cases.append(_bags(rng, 9, rows, include_last, trailing=3))  # in the last bag's size: pytorch#52851)
    for ids, offsets, weights in cases:
        n_bags = len(offsets) - 1 if include_last else len(offsets)
        got = _run(lib, [table, ids, offsets] + ([weights] if weighted else []), (n_bags, dim))
        want = F.embedding_bag(torch.from_numpy(ids), torch.from_numpy(table), torch.from_numpy(offsets), mode=mode,
                               per_sample_weights=torch.from_numpy(weights) if weighted else None,
                               include_last_offset=include_last)
        assert max_abs_error(got, want) <= FP32_ATOL, f"{n_bags} bags, {len(ids)} ids"


def test_offsets_include_last_checks_offsets_length() -> None:
    lib = _compiled("offsets", 300, 24, "sum", True, True)
    ids, offsets, weights = _bags(np.random.default_rng(0), 5, 300, include_last=True)
    with pytest.raises(ValueError, match="shape"):  # 6 offsets for 6 bags: one short
        _run(lib, [_table(np.random.default_rng(1), 300, 24), ids, offsets, weights], (6, 24))


SHORT_PREFETCH_ALWAYS_PARALLEL = GatherSchedule(prefetch_distance=3, serial_below=0)


@pytest.mark.parametrize("table_rows,dim,bag,mode,weighted,schedule", [
    ((50, 300, 7, 1000), 16, 6, "sum", False, GatherSchedule()),
    ((50, 300, 7, 1000), 16, 6, "mean", False, SHORT_PREFETCH_ALWAYS_PARALLEL),
    ((11, 64, 300), 100, 9, "sum", True, GatherSchedule()),  # two passes of 50
    ((100,) * 8, 32, 80, "sum", False, GatherSchedule()),  # RMC1-like: equal rows (row base t * rows)
], ids=["uneven-sum", "uneven-mean-short-prefetch-always-parallel", "weighted-two-pass", "rmc1-like"])
def test_batched_tables_match_torch_per_table(table_rows: tuple[int, ...], dim: int, bag: int, mode: str,
                                              weighted: bool, schedule: GatherSchedule) -> None:
    lib = _compiled("batched", table_rows, dim, bag, mode, weighted, schedule)
    rng = np.random.default_rng(len(table_rows) * 100 + dim)
    tables = [_table(rng, rows, dim, bag) for rows in table_rows]
    flat = np.concatenate([t.ravel() for t in tables])
    for batch in BATCHES:
        ids = np.concatenate([rng.integers(0, rows, (batch, bag)) for rows in table_rows], axis=1)
        ids[0, ::bag] = ids[-1, bag - 1::bag] = np.array(table_rows) - 1  # every table's largest valid id
        weights = rng.random(ids.shape, dtype=np.float32)
        got = _run(lib, [flat, ids] + ([weights] if weighted else []), (batch, len(table_rows) * dim))
        for t, table in enumerate(tables):
            cols = slice(t * bag, (t + 1) * bag)
            want = F.embedding_bag(torch.from_numpy(ids[:, cols]), torch.from_numpy(table), mode=mode,
                                   per_sample_weights=torch.from_numpy(weights[:, cols]) if weighted else None)
            assert max_abs_error(got[:, t * dim:(t + 1) * dim], want) <= FP32_ATOL, f"batch {batch}, table {t}"


@pytest.mark.parametrize("mode,weighted", [("sum", False), ("sum", True), ("mean", False)])
def test_batched_segments_of_different_dims_share_id_columns(mode: str, weighted: bool) -> None:
    """Wide&Deep's layout: deep tables (dim 16) and wide tables (dim 1) read the same id columns; the
    wide segment's rows follow the deep ones in the flat weights and its results follow in `out`."""
    deep_rows, wide_rows, bag = (50, 300, 7), (50, 300), 4
    deep = Segment(deep_rows, 16, bag, (0, 4, 8), out_col=0, weight_offset=0)
    wide = Segment(wide_rows, 1, bag, (0, 4), out_col=48, weight_offset=sum(r * 16 for r in deep_rows))
    lib = tvm.compile(tvm.IRModule({"main": batched_embedding_bag((deep, wide), 3 * bag, mode, weighted)
                                    .with_attr("global_symbol", "main")}), target=resolve_target("cpu").to_tvm())
    rng = np.random.default_rng(3)
    tables = [_table(rng, r, 16, bag) for r in deep_rows] + [_table(rng, r, 1, bag) for r in wide_rows]
    flat = np.concatenate([t.ravel() for t in tables])
    for batch in BATCHES:
        ids = np.concatenate([rng.integers(0, r, (batch, bag)) for r in deep_rows], axis=1)
        weights = rng.random(ids.shape, dtype=np.float32)
        got = _run(lib, [flat, ids] + ([weights] if weighted else []), (batch, 50))
        want = np.concatenate([F.embedding_bag(
            torch.from_numpy(ids[:, c:c + bag]), torch.from_numpy(table), mode=mode,
            per_sample_weights=torch.from_numpy(weights[:, c:c + bag]) if weighted else None).numpy()
            for c, table in zip((0, 4, 8, 0, 4), tables)], axis=1)
        assert max_abs_error(got, want) <= FP32_ATOL, f"batch {batch}"


@pytest.mark.parametrize("dim", [130])
def test_lookup_matches_torch(dim: int) -> None:
    rows = 300
    lib = _compiled("lookup", rows, dim)
    rng = np.random.default_rng(dim)
    table = _table(rng, rows, dim)
    for batch in (1, 7, 64, 3000):
        ids = rng.integers(0, rows, batch)
        ids[-1] = rows - 1
        want = F.embedding(torch.from_numpy(ids), torch.from_numpy(table))
        assert max_abs_error(_run(lib, [table, ids], (batch, dim)), want) <= FP32_ATOL, f"batch {batch}"


def test_rows_are_prefetched_unless_disabled() -> None:
    with_prefetch = _compiled("batched", (100,) * 8, 32, 80, "sum", False, GatherSchedule())
    without = _compiled("batched", (100,) * 8, 32, 80, "sum", False, GatherSchedule(prefetch_distance=0))
    assert "prefetcht0" in with_prefetch.mod.inspect_source("asm")
    assert "prefetcht0" not in without.mod.inspect_source("asm")


@pytest.mark.parametrize("build,reason", [
    (lambda: embedding_bag_fixed(10, 4, 3, "max", False), "mode must be one of"),
    (lambda: embedding_bag_fixed(10, 4, 3, "mean", True), "per_sample_weights need mode='sum'"),
    (lambda: embedding_bag_offsets(10, 0, "sum", False, False), "dim must be >= 1"),
    (lambda: Segment((10, 0), 4, 3, (0, 3)), "at least one table"),
    (lambda: batched_embedding_bag((Segment((10,), 4, 3, (0,)),), 3, "sum"), "flat weights"),
])
def test_unsupported_configurations_are_rejected(build, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build()


# -- through the whole pipeline ----------------------------------------------------------------------------


class FixedBag(torch.nn.Module):
    def __init__(self, rows: int, dim: int, mode: str, weighted: bool) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(rows, dim, mode=mode)
        self.weighted = weighted

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, per_sample_weights=weights if self.weighted else None)


@pytest.mark.parametrize("mode,weighted,bag,dim", [("sum", False, 80, 32), ("mean", False, 3, 16),
                                                   ("sum", True, 5, 8), ("sum", False, 1, 64)])
def test_fixed_layout(mode: str, weighted: bool, bag: int, dim: int) -> None:
    torch.manual_seed(0)
    rows = 500
    module = FixedBag(rows, dim, mode, weighted).eval()
    compiled = recc.compile(module, (torch.randint(0, rows, (4, bag)), torch.rand(4, bag)))
    assert compiled.report["kernels"] == {"check_ids": 1, "embedding_bag_fixed": 1}
    for batch in (1, 7, 64):
        ids = torch.randint(0, rows, (batch, bag))
        ids[0, 0] = rows - 1
        weights = torch.rand(batch, bag)
        with torch.no_grad():
            assert max_abs_error(compiled(ids, weights), module(ids, weights)) <= FP32_ATOL


class OffsetsBag(torch.nn.Module):
    def __init__(self, mode: str, include_last: bool, weighted: bool) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(300, 16, mode=mode, include_last_offset=include_last)
        self.weighted = weighted

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, offsets, per_sample_weights=weights if self.weighted else None)


@pytest.mark.parametrize("mode,include_last,weighted", [("sum", False, False), ("mean", False, False),
                                                        ("sum", True, True), ("mean", True, False)])
def test_offsets_layout_with_empty_bags(mode: str, include_last: bool, weighted: bool) -> None:
    torch.manual_seed(1)
    module = OffsetsBag(mode, include_last, weighted).eval()
    nnz, bags = torch.export.Dim("nnz"), torch.export.Dim("bags")

    def make(n_bags: int, seed: int):
        g = np.random.default_rng(seed)
        lengths = g.integers(0, 4, n_bags)
        lengths[0] = 0  # an empty bag
        lengths[-1] = max(lengths[-1], 1) if n_bags > 1 else 0
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]] + ([[lengths.sum()]] if include_last else []))
        ids = g.integers(0, 300, int(lengths.sum()))
        if len(ids):
            ids[-1] = 299
        return (torch.from_numpy(ids), torch.from_numpy(offsets.astype(np.int64)),
                torch.from_numpy(g.random(len(ids)).astype(np.float32)))

    example = make(5, 0)
    # include_last_offset: the IR keeps the bag count static (offsets has bags + 1 entries)
    shapes = ({0: nnz}, {} if include_last else {0: bags}, {0: nnz})
    from recc.frontends.torch_export import capture

    from recc.api import compile_graph

    compiled = compile_graph(capture(module, example, dynamic_shapes=shapes), "offsets")
    assert compiled.report["kernels"] == {"check_ids": 1, "embedding_bag_offsets": 1}
    for n_bags, seed in ((5, 1), (5, 2)) if include_last else ((1, 1), (6, 2), (40, 3)):
        inputs = make(n_bags, seed)
        with torch.no_grad():
            assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL
    ids, offsets, weights = make(5, 4)
    bad = offsets.clone()
    bad[2] = ids.numel() + 5
    with pytest.raises(ValueError, match="offsets must start at 0"):
        compiled(ids, bad, weights)
    if include_last:  # trailing ids past the last offset: torch's sum and mean disagree, so refuse
        short = offsets.clone()
        short[-1] = ids.numel() - 1
        with pytest.raises(ValueError, match="end exactly there"):
            compiled(ids, short, weights)


@pytest.mark.parametrize("mode,weighted", [("sum", True), ("mean", False)])
def test_batched_bf16_tables_match_torch_on_the_rounded_tables(mode: str, weighted: bool) -> None:
    """bf16 tables (uint16 storage, widened as read): the same bags as torch on the bf16-rounded tables,
    a two-pass dim (100) and a dim-1 segment included; NaN and inf rows stay NaN and inf."""
    from dataclasses import replace

    from recc.compiler.quantize import round_bf16, to_bf16

    deep_rows, wide_rows, bag = (50, 300, 7), (50, 300), 4
    deep = Segment(deep_rows, 100, bag, (0, 4, 8), out_col=0, weight_offset=0, bf16=True)
    wide = Segment(wide_rows, 1, bag, (0, 4), out_col=300, weight_offset=sum(r * 100 for r in deep_rows), bf16=True)
    lib = tvm.compile(tvm.IRModule({"main": batched_embedding_bag((deep, wide), 3 * bag, mode, weighted)
                                    .with_attr("global_symbol", "main")}), target=resolve_target("cpu").to_tvm())
    rng = np.random.default_rng(5)
    tables = [_table(rng, r, 100, bag) for r in deep_rows] + [_table(rng, r, 1, bag) for r in wide_rows]
    tables[1][3, :2] = np.nan, np.inf
    flat = to_bf16(np.concatenate([t.ravel() for t in tables]))
    for batch in BATCHES:
        ids = np.concatenate([rng.integers(0, r, (batch, bag)) for r in deep_rows], axis=1)
        ids[0, 4] = 3  # the NaN/inf row
        weights = rng.random(ids.shape, dtype=np.float32)
        got = _run(lib, [flat, ids] + ([weights] if weighted else []), (batch, 302))
        want = np.concatenate([F.embedding_bag(
            torch.from_numpy(ids[:, c:c + bag]), torch.from_numpy(round_bf16(table)), mode=mode,
            per_sample_weights=torch.from_numpy(weights[:, c:c + bag]) if weighted else None).numpy()
            for c, table in zip((0, 4, 8, 0, 4), tables)], axis=1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        assert np.isinf(got[0, 101]) and max_abs_error(got[finite], want[finite]) <= FP32_ATOL, f"batch {batch}"
    with pytest.raises(ValueError, match="all fp32, all bf16 or all 8-bit"):
        batched_embedding_bag((deep, replace(wide, bf16=False)), 3 * bag, mode, weighted)
