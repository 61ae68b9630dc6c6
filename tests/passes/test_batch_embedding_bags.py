"""canonicalize-lookups + batch-embedding-bags: fires on tiny models (tables of several rows/dims, bags of several sizes, shared
ids, embedding+sum and one-hot spellings), declines with reasons, idempotent, numbers kept (reference
interpreter, and through TVM for the batched kernel). fp32, max abs error <= 1e-5 on values ~1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recc.compiler.interpreter import interpret
from recc.compiler.ir import Graph, TensorType, sym, verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.batch_embedding_bags import BatchEmbeddingBags
from recc.passes.canonicalize_lookups import CanonicalizeLookups
from torch import nn

import recc
from tests.conftest import FP32_ATOL, max_abs_error
from tests.passes.graphs import run

ROWS, BAG = (50, 7, 300), 4


class MixedTables(nn.Module):
    """Three bags over one [B, 3, BAG] id tensor (dims 8, 8, 3), a wide table reusing table 0's ids, an
    Embedding+sum spelling and a one-hot lookup; everything concatenated."""

    def __init__(self, mode: str = "sum") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bags = nn.ModuleList([nn.EmbeddingBag(r, d, mode=mode) for r, d in zip(ROWS, (8, 8, 3))])
        self.wide = nn.EmbeddingBag(ROWS[0], 1, mode=mode)
        self.plain = nn.Embedding(20, 5)
        self.one_hot = nn.Embedding(11, 6)

    def forward(self, ids: torch.Tensor, plain_ids: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        parts = [bag(ids[:, t]) for t, bag in enumerate(self.bags)] + [self.wide(ids[:, 0])]
        parts += [self.plain(plain_ids).sum(dim=1), self.one_hot(user)]
        return torch.cat(parts, dim=1)


def _inputs(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, r, (batch, BAG), generator=g) for r in ROWS], dim=1)
    ids[0, :, 0] = torch.tensor(ROWS) - 1  # every table's largest valid id
    return ids, torch.randint(0, 20, (batch, 3), generator=g), torch.randint(0, 11, (batch,), generator=g)


def _batch(graph: Graph):
    """The two passes as the pipeline runs them: lookups canonicalized, then batched."""
    return run(graph, CanonicalizeLookups(), BatchEmbeddingBags())


def _captured(module: nn.Module) -> Graph:
    return capture(module.eval(), _inputs(4, 0))


def test_batches_every_lookup_into_one_op_and_keeps_numbers() -> None:
    module = MixedTables()
    graph = _captured(module)
    stats = _batch(graph)
    verify(graph)
    assert stats.rewrites == {"embedding-reduce-to-bag": 1, "one-hot-embedding-to-bag": 1, "batch-lookups": 1}
    ops = graph.op_histogram()
    assert ops["batched_embedding_bag"] == 1 and "embedding_bag" not in ops and "embedding" not in ops
    batched = next(n for n in graph.nodes if n.op == "batched_embedding_bag")
    assert batched.attrs["table_dims"] == (8, 8, 3, 1, 5, 6)
    assert batched.attrs["id_cols"][:4] == (0, BAG, 2 * BAG, 0)  # the wide table reads table 0's ids
    for batch in (1, 7):
        inputs = _inputs(batch, seed=batch)
        got = interpret(graph, [x.numpy() for x in inputs])[0]
        assert max_abs_error(got, module(*inputs)) <= FP32_ATOL


def test_is_idempotent() -> None:
    graph = _captured(MixedTables())
    _batch(graph)
    before = graph.op_histogram()
    again = BatchEmbeddingBags().run(graph, PassContext())
    assert again.rewrites == {} and graph.op_histogram() == before


def test_different_pooling_modes_are_batched_apart() -> None:
    class TwoModes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.EmbeddingBag(10, 4, mode="sum")
            self.b = nn.EmbeddingBag(10, 4, mode="mean")

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.a(ids), self.b(ids)], dim=1)

    graph = capture(TwoModes().eval(), (torch.randint(0, 10, (3, 2)),))
    stats = _batch(graph)
    assert stats.rewrites == {}
    assert stats.rejects == {"batch-lookups: the only lookup with mode=sum, has_weights=False": 1,
                             "batch-lookups: the only lookup with mode=mean, has_weights=False": 1}
    assert graph.op_histogram()["embedding_bag"] == 2


class SharedTable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.EmbeddingBag(10, 4, mode="sum")
        self.b = nn.EmbeddingBag(12, 4, mode="sum")

    def forward(self, ids: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        seen = nn.functional.embedding(history, self.a.weight).sum(dim=1)  # table a read twice
        return torch.cat([self.a(ids), self.b(ids), seen], dim=1)


def test_declines_a_table_that_another_op_also_reads() -> None:
    graph = capture(SharedTable().eval(), (torch.randint(0, 10, (3, 2)), torch.randint(0, 10, (3, 5))))
    stats = _batch(graph)
    reason = "batch-lookups: table is also read by another op (batching would store it twice)"
    assert stats.rejects[reason] == 2  # a's bag and the embedding+sum over a's table
    assert stats.rewrites == {"embedding-reduce-to-bag": 1}  # b alone: nothing to batch with
    assert graph.op_histogram()["embedding_bag"] == 3


def test_per_sample_weights_are_batched_apart_from_unweighted_lookups() -> None:
    class Weighted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.bags = nn.ModuleList([nn.EmbeddingBag(r, 4, mode="sum") for r in (10, 20, 30)])

        def forward(self, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.bags[0](ids, per_sample_weights=w), self.bags[1](ids, per_sample_weights=w),
                              self.bags[2](ids)], dim=1)

    module = Weighted().eval()
    ids, w = torch.randint(0, 10, (3, 5)), torch.rand(3, 5)
    graph = capture(module, (ids, w))
    stats = _batch(graph)
    assert stats.rewrites == {"batch-lookups": 1}
    assert stats.rejects == {"batch-lookups: the only lookup with mode=sum, has_weights=False": 1}
    assert graph.op_histogram()["batched_embedding_bag"] == 1
    ids, w = torch.randint(0, 10, (7, 5)), torch.rand(7, 5)
    assert max_abs_error(interpret(graph, [ids.numpy(), w.numpy()])[0], module(ids, w)) <= FP32_ATOL


def test_offsets_layout_is_declined() -> None:
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("nnz"),), "int64"))
    offsets = g.add_input("offsets", TensorType((sym("batch"),), "int64"))
    outs = [g.add_node("embedding_bag", [g.add_param(f"t{i}", np.ones((5, 2), np.float32)), ids, offsets],
                       {"layout": "offsets", "mode": "sum", "has_weights": False}).output for i in range(2)]
    g.outputs = outs
    stats = _batch(g)
    assert stats.rejects == {"batch-lookups: offsets layout (variable-size bags) is not batched": 2}
    assert g.op_histogram() == {"embedding_bag": 2}


def test_a_symbolic_bag_size_is_declined() -> None:
    """ids [batch, batch] (an ONNX input whose bag dim is named like the batch): the pass summed the bag
    widths and crashed with TypeError on the symbol (found by the ONNX fuzzer)."""
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("batch"), sym("batch")), "int64"))
    g.outputs = [g.add_node("embedding_bag", [g.add_param(f"t{i}", np.ones((5, 2), np.float32)), ids],
                            {"layout": "fixed", "mode": "sum", "has_weights": False}).output for i in range(2)]
    stats = _batch(g)
    assert stats.rejects == {"batch-lookups: ids have a symbolic bag size": 2}
    assert g.op_histogram() == {"embedding_bag": 2}
    got = interpret(g, [np.array([[1, 4], [0, 0]])])
    np.testing.assert_array_equal(got[0], np.full((2, 2), 2.0, np.float32))


def test_ids_computed_from_another_lookup_are_not_batched_with_it() -> None:
    g = Graph()
    ids = g.add_input("ids", TensorType((sym("batch"), 2), "int64"))
    first = g.add_node("embedding_bag", [g.add_param("t0", np.ones((5, 2), np.float32)), ids],
                       {"layout": "fixed", "mode": "sum", "has_weights": False}).output
    derived = g.add_node("cast", [first], {"dtype": "int64"}).output  # ids [B, 2] computed from a lookup
    second = g.add_node("embedding_bag", [g.add_param("t1", np.ones((5, 2), np.float32)), derived],
                        {"layout": "fixed", "mode": "sum", "has_weights": False}).output
    g.outputs = [second]
    stats = _batch(g)
    assert stats.rejects == {"batch-lookups: ids depend on another lookup's result": 1,
                             "batch-lookups: the only lookup with mode=sum, has_weights=False": 1}
    assert g.op_histogram()["embedding_bag"] == 2


def test_a_lookup_with_another_user_still_batches() -> None:
    """Its slice of the batched output serves every user, so a second user is no reason to decline."""
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.a, self.b = nn.EmbeddingBag(10, 4), nn.EmbeddingBag(10, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            a = self.a(ids)
            return torch.cat([a, self.b(ids), a * 2], dim=1)

    module = TwoUsers().eval()
    graph = capture(module, (torch.randint(0, 10, (3, 2)),))
    assert _batch(graph).rewrites == {"batch-lookups": 1}
    ids = torch.randint(0, 10, (5, 2))
    assert max_abs_error(interpret(graph, [ids.numpy()])[0], module(ids)) <= FP32_ATOL


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_compiled_batched_kernel_matches_eager(mode: str) -> None:
    module = MixedTables(mode).eval()
    compiled = recc.compile(module, _inputs(4, 0), tuning_db=None)
    groups = 1 if mode == "sum" else 2  # the Embedding+sum and one-hot lookups pool with sum
    assert compiled.report["final_ops"]["batched_embedding_bag"] == groups
    assert compiled.report["kernels"]["batched_embedding_bag"] == groups
    for batch in (1, 7, 300):
        inputs = _inputs(batch, seed=10 + batch)
        assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL, f"batch {batch}"
