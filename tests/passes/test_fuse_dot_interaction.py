"""fuse-dot-interaction: DLRM's interaction becomes one op (reference interpreter and TVM kernel vs eager),
declines when the gathered triangle, Z's first vector or an intermediate's users differ, idempotent.
fp32: max abs error <= 1e-5 on values of magnitude ~1 (dot products of 4..16 products of U(-1, 1)/2)."""

from __future__ import annotations

import pytest
import torch
from recc.compiler.interpreter import interpret
from recc.compiler.ir import verify
from recc.compiler.pass_manager import PassContext
from recc.frontends.torch_export import capture
from recc.passes.fuse_dot_interaction import FuseDotInteraction
from torch import nn

import recc
from tests.conftest import FP32_ATOL, max_abs_error


class Interaction(nn.Module):
    """x and T features -> cat(x, Z Z^T[:, li, lj]), as DLRM writes it; `offset` -1 is DLRM's default."""

    def __init__(self, dim: int = 4, tables: int = 3, offset: int = -1, first: str = "x",
                 expose_product: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bags = nn.ModuleList([nn.EmbeddingBag(20, dim) for _ in range(tables)])
        li, lj = torch.tril_indices(tables + 1, tables + 1, offset=offset)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)
        self.first, self.expose_product = first, expose_product

    def forward(self, x: torch.Tensor, ids: torch.Tensor):
        features = [bag(ids[:, t]) for t, bag in enumerate(self.bags)]
        head = x if self.first == "x" else x * 2
        z = torch.stack([head] + features, dim=1)
        product = torch.bmm(z, z.transpose(1, 2))
        out = torch.cat([x, product[:, self.li, self.lj]], dim=1)
        return (out, product) if self.expose_product else out


def _inputs(batch: int, seed: int, dim: int = 4, tables: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, dim, generator=g) - 0.5), torch.randint(0, 20, (batch, tables, 2), generator=g)


def _run(module: nn.Module):
    graph = capture(module.eval(), _inputs(3, 0))
    return graph, FuseDotInteraction().run(graph, PassContext())


def test_fuses_the_interaction_and_keeps_numbers() -> None:
    module = Interaction()
    graph, stats = _run(module)
    verify(graph)
    assert stats.rewrites == {"dot-interaction": 1}
    ops = graph.op_histogram()
    assert ops["dot_interaction"] == 1 and not {"matmul", "take", "permute"} & set(ops)
    for batch in (1, 7):
        inputs = _inputs(batch, batch)
        assert max_abs_error(interpret(graph, [x.numpy() for x in inputs])[0], module(*inputs)) <= FP32_ATOL
    again = FuseDotInteraction().run(graph, PassContext())
    assert again.rewrites == {} and graph.op_histogram() == ops


@pytest.mark.parametrize("variant,reason", [
    ({"offset": 0}, "gathered indices are not the strict lower triangle in row-major order"),
    ({"first": "scaled"}, "Z's first vector is not the x the result is concatenated with"),
    ({"expose_product": True}, "an interaction intermediate has another user"),
])
def test_declines_with_reason(variant: dict, reason: str) -> None:
    graph, stats = _run(Interaction(**variant))
    assert stats.rewrites == {}
    assert stats.rejects == {f"dot-interaction: {reason}": 1}
    assert "dot_interaction" not in graph.op_histogram()


@pytest.mark.parametrize("dim,tables", [(4, 3), (6, 1), (16, 9)])  # 6: lanes of 2; 1 table: one pair
def test_compiled_kernel_matches_eager(dim: int, tables: int) -> None:
    module = Interaction(dim, tables).eval()
    compiled = recc.compile(module, _inputs(3, 0, dim, tables), tuning_db=None)
    assert compiled.report["kernels"]["dot_interaction"] == 1
    for batch in (1, 7, 300):
        inputs = _inputs(batch, 100 + batch, dim, tables)
        assert max_abs_error(compiled(*inputs), module(*inputs)) <= FP32_ATOL, f"batch {batch}"
