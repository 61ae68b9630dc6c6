"""The interface every built-in model offers the compiler, the benchmarks and the tests.

To the compiler a recommendation model is more than an `nn.Module`: it needs example inputs in
`forward`'s positional order (dim 0 of every input is the batch, which the compiler treats as one
symbolic dimension), and it needs to know which parameters are embedding tables (large, gathered,
loaded memory-mapped next to the compiled code instead of being baked into it) and which input
feeds each table. `RecModel` carries those facts and `info()` reports them as plain values, so
nothing downstream has to guess from parameter shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recc.models.layers import initialize

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class TableInfo:
    """One embedding table and where its ids come from.

    `name` is the fully qualified parameter name (`dict(model.named_parameters())[name]` is the
    table), so reports and the compiler can find the weight without a second naming scheme.
    `pooling` is the number of rows looked up per sample. `is_pooled` says whether those rows are
    summed into one vector (an `EmbeddingBag`, DeepRecSys's SparseLengthsSum) or kept one per
    position (an `Embedding` over a behaviour sequence). The ids live in the forward input
    `input_name`; `input_column` is the index along its dim 1 when several tables share one
    stacked input (`sparse_ids[:, t]`), or None when the whole input belongs to this table.
    """

    name: str
    rows: int
    dim: int
    pooling: int
    input_name: str
    input_column: int | None = None
    is_pooled: bool = True

    @property
    def bytes(self) -> int:
        return self.rows * self.dim * FLOAT32_BYTES


@dataclass(frozen=True)
class ModelInfo:
    """Sizes of a built model, as numbers a report or a benchmark table can print."""

    name: str
    scale: float
    tables: tuple[TableInfo, ...]
    dense_in: int
    param_count: int
    param_bytes: int
    notes: str


def scaled_rows(rows: int, scale: float) -> int:
    """Rows of a table at `scale`: tests run the real architectures with small tables."""
    return max(1, round(rows * scale))


def check_batch(batch: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")


class RecModel(nn.Module):
    """Base of the eight models: fp32, eval mode, parameters frozen, one output tensor.

    Parameters do not require grad: these are inference models, and autograd bookkeeping would
    distort the eager baseline the benchmarks compare against.
    """

    input_names: tuple[str, ...] = ()

    def __init__(
        self, *, name: str, scale: float, dense_in: int, tables: tuple[TableInfo, ...], notes: str
    ) -> None:
        super().__init__()
        self.name = name
        self.scale = scale
        self.dense_in = dense_in
        self.tables_info = tables
        self.notes = notes

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Synthetic inputs in forward's positional order; dim 0 of each is `batch`."""
        raise NotImplementedError

    def info(self) -> ModelInfo:
        parameters = list(self.parameters())
        return ModelInfo(
            name=self.name,
            scale=self.scale,
            tables=self.tables_info,
            dense_in=self.dense_in,
            param_count=sum(p.numel() for p in parameters),
            param_bytes=sum(p.numel() * p.element_size() for p in parameters),
            notes=self.notes,
        )

    def batch_dynamic_shapes(self, max_batch: int = 4096) -> tuple[dict[int, torch.export.Dim], ...]:
        """`dynamic_shapes` for `torch.export.export`: one symbolic batch, dim 0 of every input."""
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        return tuple({0: batch} for _ in self.input_names)

    def finish_construction(self, seed: int) -> None:
        """Seeded init, frozen parameters, eval mode: the state `create` promises."""
        initialize(self, seed)
        self.requires_grad_(False)
        self.eval()
