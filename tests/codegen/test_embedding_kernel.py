"""Embedding-bag kernels vs torch.nn.functional.embedding_bag, compiled once per configuration and run at
several batch sizes: sum/mean, per-sample weights, offsets with empty bags, include_last_offset, the
largest valid id, and bag sizes smaller than the prefetch distance. fp32 max abs error <= 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recc
from tests.conftest import FP32_ATOL, max_abs_error


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
    assert compiled.report["kernels"] == {"embedding_bag_fixed": 1}
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
    from recc.api import compile_graph
    from recc.frontends.torch_export import capture

    compiled = compile_graph(capture(module, example, dynamic_shapes=shapes), "offsets")
    assert compiled.report["kernels"] == {"embedding_bag_offsets": 1}
    for n_bags, seed in ((5, 1), (5, 2)) if include_last else ((1, 1), (6, 2), (40, 3)):
        inputs = make(n_bags, seed)
        with torch.no_grad():
            assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL
    ids, offsets, weights = make(5, 4)
    bad = offsets.clone()
    bad[2] = ids.numel() + 5
    with pytest.raises(ValueError, match="offsets must start at 0"):
        compiled(ids, bad, weights)
