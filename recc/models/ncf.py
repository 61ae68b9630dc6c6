"""NCF / NeuMF (He et al. 2017) with the DeepRecSys sizes.

    sparse_ids [B, 4, 1]: columns index the GMF user, GMF item, MLP user, MLP item tables
    paper (default):
        gmf = p_u * q_i                                   (GMF: elementwise product)    [B, 64]
        tower = MLP(cat(u, i)) 128-256-256-128-64, ReLU                                  [B, 64]
        sigmoid(Linear(cat(gmf, tower)) -> 1)                                            [B, 1]
    variant="deeprecsys" (as shipped in Caffe2):
        gmf = p_u + q_i (a Sum, not a product); same tower;
        ReLU(Linear(cat(gmf, tower)) -> 64)                 a 64-wide ReLU vector        [B, 64]

The GMF and MLP tables have different vocabularies in DeepRecSys (140k vs 28k rows), so one user
id cannot index both: each table gets its own id column. A deployment would hash the user id
into each vocabulary; the lookups and the arithmetic are the same.
"""

from __future__ import annotations

import torch

from recc.models.inputs import stacked_bag_ids
from recc.models.layers import embedding_bag, mlp
from recc.models.rec_model import RecModel, TableInfo, check_batch, scaled_rows

GMF_ROWS = 140_000
MLP_ROWS = 28_000
DIM = 64
TOWER = (2 * DIM, 256, 256, 128, 64)
TABLE_ROLES = (
    ("gmf_user", GMF_ROWS),
    ("gmf_item", GMF_ROWS),
    ("mlp_user", MLP_ROWS),
    ("mlp_item", MLP_ROWS),
)
VARIANTS = ("paper", "deeprecsys")


class NCF(RecModel):
    """forward(sparse_ids [B, 4, 1] i64) -> [B, 1] probability, or [B, 64] ReLU for deeprecsys."""

    input_names = ("sparse_ids",)

    def __init__(self, *, scale: float = 1.0, seed: int = 0, variant: str = "paper") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        tables = tuple(
            TableInfo(f"{role}.weight", scaled_rows(rows, scale), DIM, 1, "sparse_ids", column)
            for column, (role, rows) in enumerate(TABLE_ROLES)
        )
        notes = (
            "NeuMF paper: GMF product + MLP tower, concat, linear, sigmoid"
            if variant == "paper"
            else "DeepRecSys as shipped: GMF pair summed, output a 64-wide ReLU vector"
        )
        super().__init__(name="ncf", scale=scale, dense_in=0, tables=tables, notes=notes)
        self.variant = variant
        self.gmf_user = embedding_bag(tables[0].rows, DIM)
        self.gmf_item = embedding_bag(tables[1].rows, DIM)
        self.mlp_user = embedding_bag(tables[2].rows, DIM)
        self.mlp_item = embedding_bag(tables[3].rows, DIM)
        self.tower = mlp(TOWER, last="relu")
        if variant == "paper":
            self.predict = mlp((DIM + TOWER[-1], 1), last="sigmoid")
        else:
            self.predict = mlp((DIM + TOWER[-1], 64), last="relu")
        self.finish_construction(seed)

    def forward(self, sparse_ids: torch.Tensor) -> torch.Tensor:
        gmf_user = self.gmf_user(sparse_ids[:, 0])
        gmf_item = self.gmf_item(sparse_ids[:, 1])
        gmf = gmf_user * gmf_item if self.variant == "paper" else gmf_user + gmf_item
        mlp_user = self.mlp_user(sparse_ids[:, 2])
        mlp_item = self.mlp_item(sparse_ids[:, 3])
        users_items = torch.cat([mlp_user, mlp_item], dim=1)
        return self.predict(torch.cat([gmf, self.tower(users_items)], dim=1))

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        rows = [table.rows for table in self.tables_info]
        return (stacked_bag_ids(batch, rows, 1, seed=seed, stream="sparse_ids"),)
