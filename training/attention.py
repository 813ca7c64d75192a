"""Attention mechanisms. Keys are projected once per sentence (`project_keys`), not at every step.

Shapes: memory (B, S, M) encoder states; mask (B, S) bool, True on real tokens; query (B, Q).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over source positions; exactly zero on padding."""
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015), eq. 6 / A.1.2: score(q, m_j) = v^T tanh(W q + U m_j)."""

    def __init__(self, query_size: int, memory_size: int, hidden_size: int) -> None:
        super().__init__()
        self.key_layer = nn.Linear(memory_size, hidden_size, bias=False)  # U
        self.query_layer = nn.Linear(query_size, hidden_size, bias=False)  # W
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)  # v

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, M) -> (B, S, A): U m_j, once per sentence."""
        return self.key_layer(memory)

    def forward(self, query, keys, memory, mask):
        """-> context (B, M), weights (B, S)."""
        energy = self.energy_layer(torch.tanh(keys + self.query_layer(query).unsqueeze(1)))
        weights = masked_softmax(energy.squeeze(-1), mask)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


class MultiplicativeAttention(nn.Module):
    """Luong et al. (2015), eq. 8: score(h_t, m_s) = h_t^T m_s ("dot") or h_t^T W_a m_s ("general")."""

    def __init__(self, query_size: int, memory_size: int, variant: str = "general") -> None:
        super().__init__()
        if variant == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs decoder size == encoder output size "
                f"({query_size} != {memory_size}); use general")
        self.key_layer = nn.Linear(memory_size, query_size, bias=False) if variant == "general" else None

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, M) -> (B, S, Q): W_a m_s, once per sentence (memory itself for dot)."""
        return memory if self.key_layer is None else self.key_layer(memory)

    def forward(self, query, keys, memory, mask):
        scores = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)
        weights = masked_softmax(scores, mask)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


def build_attention(kind: str, query_size: int, memory_size: int, hidden_size: int) -> nn.Module:
    if kind == "additive":
        return AdditiveAttention(query_size, memory_size, hidden_size)
    if kind in ("dot", "general"):
        return MultiplicativeAttention(query_size, memory_size, kind)
    raise ValueError(f"unknown attention {kind!r}: use additive, dot or general")
