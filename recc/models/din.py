"""DIN, Deep Interest Network (Zhou et al. 2018), with the DeepRecSys sizes.

Tables (dim 32): user profile 1M rows and context 10M rows, 3 ids each summed (EmbeddingBag);
candidate ad 10M rows, 1 id; behaviour items 100k rows, a sequence of 50 ids (Embedding).

    keys k = behaviour embeddings [B, 50, 32], query q = candidate embedding [B, 32]
    attention unit per position: MLP(cat(k, q, k - q, k * q)) 128 -> 80 -> 40 -> 1
        (sigmoid hidden activations, as in the authors' released code; the paper draws PReLU/Dice)
    weights = softmax over the sequence of (score + (mask - 1) * 1e9)   (masked)
    interest = sum_t weights_t * k_t                                      [B, 32]
    top: MLP(cat(profile, interest, candidate, context)) 128 -> 200 -> 80 -> 2, ReLU between
        (the paper uses PReLU/Dice; ReLU keeps to common ops), softmax -> [B, 2]

The paper's text relaxes the softmax (unnormalized weights keep the intensity of interest); its
released code, which models.md and this model follow, normalizes with a masked softmax.
Masking is arithmetic on the float mask rather than `masked_fill`: fewer ops, no bool tensors.
In the paper the behaviours and the candidate share one item table; DeepRecSys gives them
separate tables (100k vs 10M rows), which we keep.

variant="deeprecsys" (DIN as shipped in Caffe2): per behaviour position an MLP
96 -> 1 -> 32 (ReLU each) on cat(k, q, k + q), masked sum over positions, no attention softmax.
DeepRecSys looks the behaviours up as one pooled bag of 3 ids; here the same per-behaviour MLP
runs over the masked sequence so both variants take the same inputs. Its Caffe2 graph also ends
the top MLP in a ReLU; we keep the softmax over 2 of models.md, because a ReLU on two logits is
often all zeros, which would make every numerical check against this variant vacuous.

`sequence_length` (default 50) sets the behaviour sequence length.
"""

from __future__ import annotations

import torch

from recc.models.inputs import bag_ids, behaviour_sequences
from recc.models.layers import embedding, embedding_bag, mlp
from recc.models.rec_model import RecModel, TableInfo, check_batch, scaled_rows

DIM = 32
SEQUENCE_LENGTH = 50
CONTEXT_POOLING = 3
PROFILE_ROWS = 1_000_000
BEHAVIOUR_ROWS = 100_000
CANDIDATE_ROWS = 10_000_000
CONTEXT_ROWS = 10_000_000
ATTENTION = (4 * DIM, 80, 40, 1)
DEEPRECSYS_ATTENTION = (3 * DIM, 1, DIM)
TOP = (4 * DIM, 200, 80, 2)
VARIANTS = ("paper", "deeprecsys")
MASKED_SCORE = 1e9


def _tables(scale: float, sequence_length: int) -> tuple[TableInfo, ...]:
    def table(role: str, rows: int, pooling: int, is_pooled: bool = True) -> TableInfo:
        rows = scaled_rows(rows, scale)
        return TableInfo(f"{role}.weight", rows, DIM, pooling, f"{role}_ids", None, is_pooled)

    return (
        table("profile", PROFILE_ROWS, CONTEXT_POOLING),
        table("behaviour", BEHAVIOUR_ROWS, sequence_length, is_pooled=False),
        table("candidate", CANDIDATE_ROWS, 1),
        table("context", CONTEXT_ROWS, CONTEXT_POOLING),
    )


class DIN(RecModel):
    """forward(profile_ids [B, 3] i64, behaviour_ids [B, S] i64, behaviour_mask [B, S] f32,
    candidate_ids [B, 1] i64, context_ids [B, 3] i64) -> [B, 2] softmax.

    S is `sequence_length` (50).
    """

    input_names = ("profile_ids", "behaviour_ids", "behaviour_mask", "candidate_ids", "context_ids")

    def __init__(
        self,
        *,
        scale: float = 1.0,
        seed: int = 0,
        variant: str = "paper",
        sequence_length: int = SEQUENCE_LENGTH,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be an int >= 1, got {sequence_length!r}")
        tables = _tables(scale, sequence_length)
        notes = (
            "DIN paper: attention unit on [k, q, k-q, k*q], masked softmax, weighted sum"
            if variant == "paper"
            else "DeepRecSys as shipped: per-behaviour MLP on [k, q, k+q], masked sum, no softmax"
        )
        notes += f"; sequence length {sequence_length}"
        super().__init__(name="din", scale=scale, dense_in=0, tables=tables, notes=notes)
        self.variant = variant
        self.sequence_length = sequence_length
        self.profile = embedding_bag(tables[0].rows, DIM)
        self.behaviour = embedding(tables[1].rows, DIM)
        self.candidate = embedding_bag(tables[2].rows, DIM)
        self.context = embedding_bag(tables[3].rows, DIM)
        if variant == "paper":
            self.attention = mlp(ATTENTION, hidden="sigmoid")
        else:
            self.attention = mlp(DEEPRECSYS_ATTENTION, last="relu")
        self.top = mlp(TOP)
        self.finish_construction(seed)

    def forward(
        self,
        profile_ids: torch.Tensor,
        behaviour_ids: torch.Tensor,
        behaviour_mask: torch.Tensor,
        candidate_ids: torch.Tensor,
        context_ids: torch.Tensor,
    ) -> torch.Tensor:
        keys = self.behaviour(behaviour_ids)
        candidate = self.candidate(candidate_ids)
        query = candidate.unsqueeze(1).expand_as(keys)
        if self.variant == "paper":
            units = torch.cat([keys, query, keys - query, keys * query], dim=2)
            scores = self.attention(units).squeeze(2)
            weights = torch.softmax(scores + (behaviour_mask - 1.0) * MASKED_SCORE, dim=1)
            interest = (weights.unsqueeze(2) * keys).sum(dim=1)
        else:
            units = torch.cat([keys, query, keys + query], dim=2)
            interest = (self.attention(units) * behaviour_mask.unsqueeze(2)).sum(dim=1)
        features = [self.profile(profile_ids), interest, candidate, self.context(context_ids)]
        return torch.softmax(self.top(torch.cat(features, dim=1)), dim=1)

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        profile, behaviour, candidate, context = self.tables_info
        behaviour_ids, behaviour_mask = behaviour_sequences(
            batch, behaviour.rows, self.sequence_length, seed=seed, stream="behaviour_ids"
        )
        return (
            bag_ids(batch, profile.rows, CONTEXT_POOLING, seed=seed, stream="profile_ids"),
            behaviour_ids,
            behaviour_mask,
            bag_ids(batch, candidate.rows, 1, seed=seed, stream="candidate_ids"),
            bag_ids(batch, context.rows, CONTEXT_POOLING, seed=seed, stream="context_ids"),
        )
