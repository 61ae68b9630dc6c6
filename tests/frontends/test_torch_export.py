"""The torch.export frontend: every covered op family converts, and the reference interpreter on the
converted graph equals eager PyTorch on fresh inputs at batch sizes other than the export batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from recc.compiler.interpreter import interpret
from recc.compiler.ir import print_graph
from recc.frontends.torch_export import UnsupportedOpError, capture
from tests.conftest import FP32_ATOL, max_abs_error


def check(module: nn.Module, make_inputs, batches=(1, 3, 8)) -> str:
    """Capture at batch 4, then compare interpreter vs eager at other batches; returns the IR text."""
    torch.manual_seed(0)
    module = module.eval()
    graph = capture(module, make_inputs(4))
    for b in batches:
        inputs = make_inputs(b)
        with torch.no_grad():
            expected = module(*inputs)
        got = interpret(graph, [t.numpy() for t in inputs])[0]
        assert max_abs_error(got, expected) <= FP32_ATOL, f"batch {b}"
    return print_graph(graph)


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6) * 0.3)
        self.b = nn.Parameter(torch.randn(6) * 0.3)
        self.lin = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.addmm(self.b, x, self.w)
        c = torch.mm(x, self.w) + self.b
        d = torch.matmul(x, self.w) - a * 0.5 + c / 2.0
        return torch.tanh(self.lin(torch.relu(d))) + torch.sigmoid(d).sum(dim=1, keepdim=True)


def test_dense_algebra_and_elementwise() -> None:
    text = check(Dense(), lambda b: (torch.randn(b, 8),))
    assert "dense(" in text and "matmul(" in text


class Shapes(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, y], dim=1)  # [B, 12]
        s = torch.stack([x, y], dim=1)  # [B, 2, 6]
        v = s.view(-1, 12).reshape(x.shape[0], 3, 4).permute(0, 2, 1).transpose(1, 2).flatten(1)
        u = z.unsqueeze(1).squeeze(1) + v
        q = torch.bmm(s, s.transpose(1, 2)).mean(dim=(1, 2))
        return torch.softmax(u, dim=-1) * q.unsqueeze(1)


def test_shapes_concat_stack_permute() -> None:
    check(Shapes(), lambda b: (torch.randn(b, 6), torch.randn(b, 6)))


class Embeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 4)
        self.bag_sum = nn.EmbeddingBag(40, 4, mode="sum")
        self.bag_mean = nn.EmbeddingBag(40, 4, mode="mean")

    def forward(self, ids: torch.Tensor, bags: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        a = self.emb(ids).sum(dim=1)  # Embedding + sum over the bag
        b = self.bag_sum(bags, per_sample_weights=weights)
        c = self.bag_mean(bags)
        return a + b + c + torch.index_select(self.emb.weight, 0, ids[:, 0])


def test_embedding_forms() -> None:
    text = check(Embeddings(), lambda b: (torch.randint(0, 50, (b, 3)), torch.randint(0, 40, (b, 5)), torch.rand(b, 5)))
    assert 'layout="fixed"' in text and 'mode="mean"' in text and "has_weights=True" in text


class OffsetsBag(nn.Module):
    def __init__(self, include_last: bool) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(30, 4, mode="sum", include_last_offset=include_last)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, offsets)


@pytest.mark.parametrize("include_last", [False, True])
def test_embedding_bag_offsets_form(include_last: bool) -> None:
    module = OffsetsBag(include_last).eval()
    ids = torch.tensor([1, 2, 29, 0, 5, 5, 7], dtype=torch.int64)
    offsets = torch.tensor([0, 2, 2, 6] + ([7] if include_last else []), dtype=torch.int64)  # has an empty bag
    nnz, bags = torch.export.Dim("nnz"), torch.export.Dim("bags") if not include_last else None
    graph = capture(module, (ids, offsets), dynamic_shapes=({0: nnz}, {0: bags} if bags else {}))
    text = print_graph(graph)
    assert 'layout="offsets"' in text
    got = interpret(graph, [ids.numpy(), offsets.numpy()])[0]
    assert max_abs_error(got, module(ids, offsets)) <= FP32_ATOL


class Interaction(nn.Module):
    """DLRM's dot interaction: Z Z^T and its strict lower triangle via Z[:, li, lj] (which TVM's own
    importer translates into outer-product indexing)."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        li, lj = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("li", li)
        self.register_buffer("lj", lj)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        zz = torch.bmm(z, z.transpose(1, 2))
        return zz[:, self.li, self.lj]


def test_lower_triangle_indexing_has_the_right_shape_and_values() -> None:
    text = check(Interaction(), lambda b: (torch.randn(b, 4, 3),))
    assert "float32[batch, 6]" in text


def test_constants_and_scalars() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x * 2.0 + 1, min=0.0) - torch.full((1, 3), 0.5) + (x > 0).float()

    check(M(), lambda b: (torch.randn(b, 3),))


def test_unsupported_op_names_op_and_source_line() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft(x, dim=1).abs()  # no complex dtypes in the IR

    with pytest.raises(UnsupportedOpError) as err:
        capture(M(), (torch.randn(4, 3),))
    message = str(err.value)
    assert "_fft_r2c" in message and "test_torch_export.py" in message


def test_symbolic_batch_is_named_batch() -> None:
    graph = capture(nn.Linear(3, 2), (torch.randn(1, 3),))  # batch 1 example: still a dynamic batch
    assert str(graph.inputs[0].type) == "float32[batch, 3]"
    out = interpret(graph, [np.ones((5, 3), np.float32)])[0]
    assert out.shape == (5, 2)


def test_varargs_forward_gets_the_batch_dim_on_every_input() -> None:
    """forward(self, x, *rest): torch.export binds the inputs filling *rest as one tuple, so recc's default
    dynamic shapes must too (they were one flat tuple, and every such module was refused)."""

    class VarArgs(nn.Module):
        def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            return x + rest[0] * rest[1]

    text = check(VarArgs(), lambda b: (torch.randn(b, 3), torch.randn(b, 3), torch.randn(b, 3)))
    assert text.count("float32[batch, 3]") >= 3


def test_embedding_bag_max_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedOpError, match="mode='max' is not supported"):
        capture(nn.EmbeddingBag(10, 4, mode="max"), (torch.randint(0, 10, (4, 3)),))


class Take(nn.Module):
    """torch.take: a table read as if flattened, with flat ids (negative ones wrap once)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 5))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return x * torch.take(self.w, ids)


def test_take_reads_the_flattened_table_and_wraps_negative_ids() -> None:
    text = check(Take(), lambda b: (torch.randn(b, 2), torch.randint(-30, 30, (b, 2))))
    assert "wrap=True" in text


def test_take_on_a_batch_sized_tensor_is_refused_by_name() -> None:
    class TakeInput(nn.Module):
        def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            return torch.take(x, ids)

    with pytest.raises(UnsupportedOpError, match="torch.take on a tensor whose size depends on the batch"):
        capture(TakeInput(), (torch.randn(4, 3), torch.randint(0, 12, (4, 2))))
