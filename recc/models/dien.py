"""DIEN, Deep Interest Evolution Network (Zhou et al. 2019), with the DeepRecSys sizes.

Tables (dim 32, one id each), in DeepRecSys's roles: user profile (500k rows), 40 behaviour
tables (500k rows each, table t holds position t of the behaviour sequence), candidate ad (5M),
context (5M). The paper shares one item table between all positions and the candidate;
DeepRecSys gives each position its own table, which we keep so the sizes match.

    e_t = behaviour_t[behaviour_ids[:, t]]                            [B, 40, 32]
    interest extractor: GRU, hidden 64, over e_1..e_40                h_t [B, 40, 64]
    attention (paper eq. 5, bilinear): a_t = softmax_t(h_t W e_a), masked   [B, 40]
    interest evolution: AUGRU, hidden 64, update gate scaled by a_t   final state h'_T [B, 64]
    top: MLP(cat(profile, candidate e_a, context, h'_T)) 160 -> 200 -> 80 -> 2, ReLU between
        (the paper uses PReLU/Dice), softmax -> [B, 2]

Padding needs no mask inside the recurrences: positions after a sample's valid length come after
every valid one, the extractor's states there only feed attention scores that the mask zeroes,
and AUGRU with a zero score carries its state unchanged, so h'_T is the state at the valid length.
The auxiliary loss of the paper is training-only and not part of inference.

`gru_impl`: "cells" (default) writes the extractor GRU as explicit unrolled cells; "nn" uses
`nn.GRU` (one `aten.gru` node in the export). Same parameters, same function.

variant="deeprecsys" (DIEN as shipped in Caffe2): two tanh RNNs (hidden 64) instead of GRU and
AUGRU. x = rnn_0(e) + softmax_over_hidden(Linear_64x64(rnn_0(e))); final state of rnn_1(x) (the
mask carries the state through padding, Caffe2's seq_lengths); top MLP on cat(state, profile,
candidate, context) 160-200-80-2. Its Caffe2 graph ends the top MLP in a ReLU; we keep the
softmax over 2 of models.md, because a ReLU on two logits is often all zeros (it is for this
variant's default weights), which would make every numerical check against it vacuous.

`sequence_length` (default 40) sets the number of behaviour positions and so of behaviour tables
(DeepRecSys sizes the sequence by its behaviour-table count). Shorter sequences keep tests fast:
`torch.export` unrolls both recurrences, at roughly 10 ms of tracing per op on a small CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from recc.models.inputs import bag_ids, behaviour_sequences
from recc.models.layers import embedding, embedding_bag, mlp
from recc.models.rec_model import RecModel, TableInfo, check_batch, scaled_rows
from recc.models.recurrent import AUGRU, GRU, TanhRNN

DIM = 32
HIDDEN = 64
SEQUENCE_LENGTH = 40
PROFILE_ROWS = 500_000
BEHAVIOUR_ROWS = 500_000
CANDIDATE_ROWS = 5_000_000
CONTEXT_ROWS = 5_000_000
TOP = (3 * DIM + HIDDEN, 200, 80, 2)
VARIANTS = ("paper", "deeprecsys")
MASKED_SCORE = 1e9


def _tables(scale: float, sequence_length: int) -> tuple[TableInfo, ...]:
    behaviour_rows = scaled_rows(BEHAVIOUR_ROWS, scale)
    behaviours = tuple(
        TableInfo(f"behaviour.{t}.weight", behaviour_rows, DIM, 1, "behaviour_ids", t, False)
        for t in range(sequence_length)
    )
    return (
        TableInfo("profile.weight", scaled_rows(PROFILE_ROWS, scale), DIM, 1, "profile_ids"),
        *behaviours,
        TableInfo("candidate.weight", scaled_rows(CANDIDATE_ROWS, scale), DIM, 1, "candidate_ids"),
        TableInfo("context.weight", scaled_rows(CONTEXT_ROWS, scale), DIM, 1, "context_ids"),
    )


class DIEN(RecModel):
    """forward(profile_ids [B, 1] i64, behaviour_ids [B, S] i64, behaviour_mask [B, S] f32,
    candidate_ids [B, 1] i64, context_ids [B, 1] i64) -> [B, 2] softmax.

    S is `sequence_length` (40).
    """

    input_names = ("profile_ids", "behaviour_ids", "behaviour_mask", "candidate_ids", "context_ids")

    def __init__(
        self,
        *,
        scale: float = 1.0,
        seed: int = 0,
        variant: str = "paper",
        gru_impl: str = "cells",
        sequence_length: int = SEQUENCE_LENGTH,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "deeprecsys" and gru_impl != "cells":
            raise ValueError("gru_impl applies to the paper variant's GRU; deeprecsys has tanh RNNs")
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be an int >= 1, got {sequence_length!r}")
        tables = _tables(scale, sequence_length)
        notes = (
            f"DIEN paper: GRU ({gru_impl}) -> bilinear attention vs candidate -> AUGRU"
            if variant == "paper"
            else "DeepRecSys as shipped: two tanh RNNs"
        )
        notes += f"; sequence length {sequence_length}"
        super().__init__(name="dien", scale=scale, dense_in=0, tables=tables, notes=notes)
        self.variant = variant
        profile, *behaviours, candidate, context = tables
        self.profile = embedding_bag(profile.rows, DIM)
        self.behaviour = nn.ModuleList(embedding(t.rows, DIM) for t in behaviours)
        self.candidate = embedding_bag(candidate.rows, DIM)
        self.context = embedding_bag(context.rows, DIM)
        if variant == "paper":
            self.interest_extractor = GRU(DIM, HIDDEN, impl=gru_impl)
            self.attention = nn.Linear(DIM, HIDDEN, bias=False)
            self.interest_evolution = AUGRU(HIDDEN, HIDDEN)
        else:
            self.rnn_0 = TanhRNN(DIM, HIDDEN)
            self.mix = nn.Linear(HIDDEN, HIDDEN)
            self.rnn_1 = TanhRNN(HIDDEN, HIDDEN)
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
        behaviours = torch.stack(
            [table(behaviour_ids[:, t]) for t, table in enumerate(self.behaviour)], dim=1
        )
        profile = self.profile(profile_ids)
        candidate = self.candidate(candidate_ids)
        context = self.context(context_ids)
        if self.variant == "deeprecsys":
            states = self.rnn_0(behaviours, behaviour_mask)
            mixed = states + torch.softmax(self.mix(states), dim=2)
            final = self.rnn_1(mixed, behaviour_mask)[:, -1]
            features = [final, profile, candidate, context]
        else:
            states = self.interest_extractor(behaviours)
            query = self.attention(candidate)
            scores = (states * query.unsqueeze(1)).sum(dim=2)
            weights = torch.softmax(scores + (behaviour_mask - 1.0) * MASKED_SCORE, dim=1)
            interest = self.interest_evolution(states, weights)
            features = [profile, candidate, context, interest]
        return torch.softmax(self.top(torch.cat(features, dim=1)), dim=1)

    def example_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        check_batch(batch)
        profile, behaviour, *_, candidate, context = self.tables_info
        behaviour_ids, behaviour_mask = behaviour_sequences(
            batch, behaviour.rows, len(self.behaviour), seed=seed, stream="behaviour_ids"
        )
        return (
            bag_ids(batch, profile.rows, 1, seed=seed, stream="profile_ids"),
            behaviour_ids,
            behaviour_mask,
            bag_ids(batch, candidate.rows, 1, seed=seed, stream="candidate_ids"),
            bag_ids(batch, context.rows, 1, seed=seed, stream="context_ids"),
        )
