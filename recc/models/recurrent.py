"""Recurrent layers for DIEN, written as explicit per-step cells over a fixed sequence length.

`torch.export` unrolls the Python loop (the length is a static dim), so the exported graph holds
plain linear / sigmoid / tanh / mul / add nodes that the compiler can fuse; `nn.GRU` would arrive
as one opaque `aten.gru` node instead (kept as an option for the first GRU, `impl="nn"`).

The input-to-hidden projection of all steps is one Linear over `[B, L, in]` (as cuDNN and
`nn.GRU` do): one GEMM of B*L rows instead of L small ones, same arithmetic. Only the
hidden-to-hidden product stays inside the loop.

GRU equations are PyTorch's (gates r, z, n in that order, r applied after the hidden product):
    r = sigmoid(Wx_r + Uh_r), z = sigmoid(Wx_z + Uh_z), n = tanh(Wx_n + r * Uh_n),
    h' = n + z * (h - n)            (= (1 - z) * n + z * h)
so `GRU(impl="cells")` and `GRU(impl="nn")` compute the same function from the same parameters.
AUGRU (DIEN paper, eq. 6) scales the update gate by the attention score, u' = a_t * u, and
    h' = h + u' * (n - h)           (= (1 - u') * h + u' * n)
so a zero score (a masked, padded position) leaves the state unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from recc.models.layers import linear_bias, xavier_weight

GRU_IMPLS = ("cells", "nn")


def _draw_gate_parameters(
    input_size: int, hidden_size: int, gates: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w_ih, b_ih, w_hh, b_hh) in that draw order, Linear rules: Xavier weights, small biases."""
    w_ih = xavier_weight((gates * hidden_size, input_size), generator)
    b_ih = linear_bias(gates * hidden_size, generator)
    w_hh = xavier_weight((gates * hidden_size, hidden_size), generator)
    b_hh = linear_bias(gates * hidden_size, generator)
    return w_ih, b_ih, w_hh, b_hh


class GatedCells(nn.Module):
    """`input_gates` (in -> gates*H) and `hidden_gates` (H -> gates*H), with their seeded init."""

    def __init__(self, input_size: int, hidden_size: int, gates: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.gates = gates
        self.input_gates = nn.Linear(input_size, gates * hidden_size)
        self.hidden_gates = nn.Linear(hidden_size, gates * hidden_size)

    def reset_parameters_seeded(self, generator: torch.Generator) -> None:
        w_ih, b_ih, w_hh, b_hh = _draw_gate_parameters(
            self.input_size, self.hidden_size, self.gates, generator
        )
        with torch.no_grad():
            self.input_gates.weight.copy_(w_ih)
            self.input_gates.bias.copy_(b_ih)
            self.hidden_gates.weight.copy_(w_hh)
            self.hidden_gates.bias.copy_(b_hh)


class GRU(nn.Module):
    """One GRU layer, `[B, L, in] -> [B, L, H]` (every step's state), zero initial state."""

    def __init__(self, input_size: int, hidden_size: int, impl: str = "cells") -> None:
        super().__init__()
        if impl not in GRU_IMPLS:
            raise ValueError(f"gru_impl must be one of {GRU_IMPLS}, got {impl!r}")
        self.impl = impl
        self.input_size = input_size
        self.hidden_size = hidden_size
        if impl == "cells":
            self.cells = GatedCells(input_size, hidden_size, gates=3)
        else:
            self.gru = nn.GRU(input_size, hidden_size, batch_first=True)

    def reset_parameters_seeded(self, generator: torch.Generator) -> None:
        if self.impl == "cells":
            self.cells.reset_parameters_seeded(generator)
            return
        w_ih, b_ih, w_hh, b_hh = _draw_gate_parameters(self.input_size, self.hidden_size, 3, generator)
        with torch.no_grad():
            self.gru.weight_ih_l0.copy_(w_ih)
            self.gru.bias_ih_l0.copy_(b_ih)
            self.gru.weight_hh_l0.copy_(w_hh)
            self.gru.bias_hh_l0.copy_(b_hh)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.impl == "nn":
            return self.gru(inputs)[0]
        hidden = self.hidden_size
        x_rz, x_n = self.cells.input_gates(inputs).split([2 * hidden, hidden], dim=2)
        state = inputs.new_zeros(inputs.shape[0], hidden)
        states = []
        for x_rz_t, x_n_t in zip(x_rz.unbind(1), x_n.unbind(1), strict=True):
            h_rz, h_n = self.cells.hidden_gates(state).split([2 * hidden, hidden], dim=1)
            reset, keep = torch.sigmoid(x_rz_t + h_rz).chunk(2, dim=1)
            candidate = torch.tanh(x_n_t + reset * h_n)
            state = candidate + keep * (state - candidate)
            states.append(state)
        return torch.stack(states, dim=1)


class AUGRU(nn.Module):
    """GRU with attentional update gate (DIEN): `([B, L, in], scores [B, L]) -> state [B, H]`."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cells = GatedCells(input_size, hidden_size, gates=3)

    def forward(self, inputs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_size
        x_ru, x_n = self.cells.input_gates(inputs).split([2 * hidden, hidden], dim=2)
        steps = zip(x_ru.unbind(1), x_n.unbind(1), scores.unsqueeze(2).unbind(1), strict=True)
        state = inputs.new_zeros(inputs.shape[0], hidden)
        for x_ru_t, x_n_t, score_t in steps:
            h_ru, h_n = self.cells.hidden_gates(state).split([2 * hidden, hidden], dim=1)
            reset, update = torch.sigmoid(x_ru_t + h_ru).chunk(2, dim=1)
            candidate = torch.tanh(x_n_t + reset * h_n)
            state = state + (update * score_t) * (candidate - state)
        return state


class TanhRNN(nn.Module):
    """Caffe2's BasicRNN, `h' = tanh(W x + b + U h + c)`, `[B, L, in] -> [B, L, H]`.

    With a 0/1 `mask` `[B, L]` the state is carried unchanged through padded steps, so the last
    output is the state at each sample's valid length (Caffe2's `seq_lengths` semantics).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cells = GatedCells(input_size, hidden_size, gates=1)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        projected = self.cells.input_gates(inputs)
        state = inputs.new_zeros(inputs.shape[0], self.hidden_size)
        states = []
        for projected_t, mask_t in zip(projected.unbind(1), mask.unsqueeze(2).unbind(1), strict=True):
            stepped = torch.tanh(projected_t + self.cells.hidden_gates(state))
            state = state + mask_t * (stepped - state)
            states.append(state)
        return torch.stack(states, dim=1)
