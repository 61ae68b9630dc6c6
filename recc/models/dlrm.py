"""DLRM (Naumov et al. 2019) with the DeepRecSys RMC1/RMC2/RMC3 sizes.

    dense [B, dense_in] -> bottom MLP (ReLU) -> x [B, d]
    sparse_ids [B, T, L] -> T EmbeddingBag(sum) -> e_1..e_T [B, d]
    dot (default, the DLRM paper): Z = stack(x, e_1..e_T) [B, T+1, d]; ZZ = bmm(Z, Z^T);
        keep the strict lower triangle with constant index tensors, ZZ[:, li, lj];
        top input = cat(x, ZZ[:, li, lj])              width d + (T+1)T/2
    cat (DeepRecSys as shipped):  top input = cat(x, e_1..e_T)   width d (T+1)
    -> top MLP (ReLU, last layer sigmoid) -> [B, 1]

The strict lower triangle (no self-interaction terms) is the DLRM default
(`arch_interaction_itself=False`). `li, lj` are non-persistent buffers: constants of the graph,
not weights, and not part of the state dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recc.models.inputs import dense_features, stacked_bag_ids
from recc.models.layers import embedding_bag, mlp
from recc.models.rec_model import RecModel, TableInfo, check_batch, scaled_rows

INTERACTIONS = ("dot", "cat")


@dataclass(frozen=True)
class DLRMConfig:
    """One DeepRecSys DLRM configuration. `bottom` starts at the dense width; `top` ends at 1."""

    name: str
    tables: int
    rows: int
    dim: int
    pooling: int
    bottom: tuple[int, ...]
    top: tuple[int, ...]


RMC1 = DLRMConfig("dlrm-rmc1", 8, 4_000_000, 32, 80, (128, 64, 32), (256, 64, 1))
RMC2 = DLRMConfig("dlrm-rmc2", 32, 500_000, 64, 120, (256, 128, 64), (128, 64, 1))
RMC3 = DLRMConfig("dlrm-rmc3", 10, 2_000_000, 32, 20, (2560, 1024, 256, 32), (512, 256, 1))


class DLRM(RecModel):
    """forward(dense [B, dense_in] f32, sparse_ids [B, T, L] i64) -> click probability [B, 1]."""

    input_names = ("dense", "sparse_ids")

    def __init__(
        self, config: DLRMConfig, *, scale: float = 1.0, seed: int = 0, interaction: str = "dot"
    ) -> None:
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
        if config.bottom[-1] != config.dim:
            raise ValueError(f"{config.name}: bottom MLP must end at the embedding dim {config.dim}")
        rows = scaled_rows(config.rows, scale)
        tables = tuple(
            TableInfo(f"tables.{t}.weight", rows, config.dim, config.pooling, "sparse_ids", t)
            for t in range(config.tables)
        )
        notes = (
            "DLRM paper architecture, pairwise dot interaction (strict lower triangle)"
            if interaction == "dot"
            else "DeepRecSys as shipped: concatenation interaction"
        )
        super().__init__(name=config.name, scale=scale, dense_in=config.bottom[0], tables=tables, notes=notes)
        self.config = config
        self.interaction = interaction
        self.bottom = mlp(config.bottom, last="relu")
        self.tables = nn.ModuleList(embedding_bag(rows, config.dim) for _ in range(config.tables))
        features = config.tables + 1
        if interaction == "dot":
            li, lj = torch.tril_indices(features, features, offset=-1)
            self.register_buffer("li", li, persistent=False)
            self.register_buffer("lj", lj, persistent=False)
            top_in = config.dim + len(li)
        else:
            top_in = config.dim * features
        self.top = mlp((top_in, *config.top), last="sigmoid")
        self.finish_construction(seed)

    def forward(self, dense: torch.Tensor, sparse_ids: torch.Tensor) -> torch.Tensor:
        bottom = self.bottom(dense)
        pooled = [table(sparse_ids[:, t]) for t, table in enumerate(self.tables)]
        if self.interaction == "dot":
            features = torch.stack([bottom, *pooled], dim=1)
            products = torch.bmm(features, features.transpose(1, 2))
            top_in = torch.cat([bottom, products[:, self.li, self.lj]], dim=1)
        else:
            top_in = torch.cat([bottom, *pooled], dim=1)
        return self.top(top_in)

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        rows = [table.rows for table in self.tables_info]
        return (
            dense_features(batch, self.dense_in, seed=seed),
            stacked_bag_ids(batch, rows, self.config.pooling, seed=seed, stream="sparse_ids"),
        )
