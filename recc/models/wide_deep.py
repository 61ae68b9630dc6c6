"""Wide & Deep (Cheng et al. 2016) and its multi-task form, with the DeepRecSys sizes.

WnD, `wnd`:
    sparse_ids [B, 27, 1] -> 27 EmbeddingBag(sum) of dim 32 -> e_1..e_27
    deep  = MLP(cat(dense, e_1..e_27)) 1376-1024-512-256-1, ReLU           logit [B, 1]
    wide  = w . dense + sum_t w_t[sparse_ids[:, t]]                        logit [B, 1]
            (a linear model over the dense features and the one-hot ids; the id weights are
             per-table 1-wide EmbeddingBags, which is what a linear layer over one-hot ids is)
    sigmoid(deep + wide) -> [B, 1]; the deep output layer's bias is the model's single bias.
    variant="deeprecsys": no wide part (DeepRecSys as shipped), sigmoid(deep).
    The paper's cross-product transformations are feature engineering upstream of the model;
    any crossed id would be one more 1-wide table here.

MT-WnD, `mt-wnd` (shared-bottom multi-task, as DeepRecSys builds it):
    sparse_ids [B, 43, 1] -> 41 tables of 500k rows + 2 of 5M rows, dim 32
    shared = MLP(cat(dense, e_1..e_43)) 1888-1024-512, ReLU
    head_k = MLP(shared) 512-256-128-1, ReLU between;  sigmoid(cat(head_1..head_N)) -> [B, N]
    `heads` (default 3); heads=1 is DeepRecSys as shipped. No wide part: models.md lists the
    interaction as a plain concat, and YouTube's multi-task ranker (MMoE, shallow position-bias
    tower) is not what DeepRecSys benchmarks.
"""

from __future__ import annotations

import torch
from torch import nn

from recc.models.inputs import dense_features, stacked_bag_ids
from recc.models.layers import embedding_bag, mlp
from recc.models.rec_model import RecModel, TableInfo, check_batch, scaled_rows

DIM = 32
DENSE_IN = 512
WND_TABLES = 27
WND_ROWS = 1_000_000
WND_DEEP = (DENSE_IN + WND_TABLES * DIM, 1024, 512, 256, 1)
MTWND_ROWS = (500_000,) * 41 + (5_000_000,) * 2
MTWND_SHARED = (DENSE_IN + len(MTWND_ROWS) * DIM, 1024, 512)
MTWND_HEAD = (512, 256, 128, 1)
VARIANTS = ("paper", "deeprecsys")


def _deep_tables(rows: tuple[int, ...], scale: float) -> tuple[TableInfo, ...]:
    return tuple(
        TableInfo(f"tables.{t}.weight", scaled_rows(table_rows, scale), DIM, 1, "sparse_ids", t)
        for t, table_rows in enumerate(rows)
    )


class WideAndDeep(RecModel):
    """forward(dense [B, 512] f32, sparse_ids [B, 27, 1] i64) -> click probability [B, 1]."""

    input_names = ("dense", "sparse_ids")

    def __init__(self, *, scale: float = 1.0, seed: int = 0, variant: str = "paper") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        deep_tables = _deep_tables((WND_ROWS,) * WND_TABLES, scale)
        wide_tables = tuple(
            TableInfo(f"wide_tables.{t}.weight", table.rows, 1, 1, "sparse_ids", t)
            for t, table in enumerate(deep_tables)
        )
        has_wide = variant == "paper"
        notes = (
            "Wide & Deep paper: wide linear over dense + one-hot ids, plus deep logit, sigmoid"
            if has_wide
            else "DeepRecSys as shipped: deep MLP only, no wide part"
        )
        super().__init__(
            name="wnd",
            scale=scale,
            dense_in=DENSE_IN,
            tables=deep_tables + wide_tables if has_wide else deep_tables,
            notes=notes,
        )
        self.has_wide = has_wide
        self.tables = nn.ModuleList(embedding_bag(t.rows, DIM) for t in deep_tables)
        self.deep = mlp(WND_DEEP)
        if has_wide:
            self.wide_dense = nn.Linear(DENSE_IN, 1, bias=False)
            self.wide_tables = nn.ModuleList(embedding_bag(t.rows, 1) for t in wide_tables)
        self.finish_construction(seed)

    def forward(self, dense: torch.Tensor, sparse_ids: torch.Tensor) -> torch.Tensor:
        ids = [sparse_ids[:, t] for t in range(len(self.tables))]
        embedded = [table(table_ids) for table, table_ids in zip(self.tables, ids, strict=True)]
        logit = self.deep(torch.cat([dense, *embedded], dim=1))
        if self.has_wide:
            id_weights = [table(table_ids) for table, table_ids in zip(self.wide_tables, ids, strict=True)]
            wide = torch.cat(id_weights, dim=1).sum(dim=1, keepdim=True)
            logit = logit + self.wide_dense(dense) + wide
        return torch.sigmoid(logit)

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        rows = [table.rows for table in self.tables_info[:WND_TABLES]]
        return (
            dense_features(batch, DENSE_IN, seed=seed),
            stacked_bag_ids(batch, rows, 1, seed=seed, stream="sparse_ids"),
        )


class MultiTaskWideAndDeep(RecModel):
    """forward(dense [B, 512] f32, sparse_ids [B, 43, 1] i64) -> per-task probability [B, heads]."""

    input_names = ("dense", "sparse_ids")

    def __init__(self, *, scale: float = 1.0, seed: int = 0, heads: int = 3) -> None:
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be an int >= 1, got {heads!r}")
        tables = _deep_tables(MTWND_ROWS, scale)
        notes = f"shared-bottom multi-task, {heads} sigmoid heads" + (
            " (DeepRecSys as shipped)" if heads == 1 else ""
        )
        super().__init__(name="mt-wnd", scale=scale, dense_in=DENSE_IN, tables=tables, notes=notes)
        self.tables = nn.ModuleList(embedding_bag(t.rows, DIM) for t in tables)
        self.shared = mlp(MTWND_SHARED, last="relu")
        self.heads = nn.ModuleList(mlp(MTWND_HEAD) for _ in range(heads))
        self.finish_construction(seed)

    def forward(self, dense: torch.Tensor, sparse_ids: torch.Tensor) -> torch.Tensor:
        embedded = [table(sparse_ids[:, t]) for t, table in enumerate(self.tables)]
        shared = self.shared(torch.cat([dense, *embedded], dim=1))
        return torch.sigmoid(torch.cat([head(shared) for head in self.heads], dim=1))

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        rows = [table.rows for table in self.tables_info]
        return (
            dense_features(batch, DENSE_IN, seed=seed),
            stacked_bag_ids(batch, rows, 1, seed=seed, stream="sparse_ids"),
        )
