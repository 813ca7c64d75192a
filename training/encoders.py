"""Bidirectional RNN encoder (Bahdanau et al. 2015, section 3.2).

Each direction is its own unidirectional RNN, so the same weights run two ways:
- packed (training): `pack_padded_sequence` skips padding;
- unpacked (export): the backward direction reads each sentence reversed *within its length* via a
  gather index, which ONNX exports cleanly (packed sequences do not export).
Both give the same states (a test proves it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, S) index that reverses positions < length and leaves padding in place."""
    pos = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    rev = lengths.unsqueeze(1) - 1 - pos
    return torch.where(rev >= 0, rev, pos)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    index = reverse_index(lengths, x.size(1)).unsqueeze(-1).expand(-1, -1, x.size(2))
    return torch.gather(x, 1, index)


class RecurrentEncoder(nn.Module):
    """Embedded source (B, S, E), lengths (B,) -> memory (B, S, 2H), final (B, 2H) [fwd last; bwd first]."""

    def __init__(self, rnn_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        rnn = RNNS[rnn_type]
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_rnns = nn.ModuleList(rnn(s, hidden_size, batch_first=True) for s in sizes)
        self.backward_rnns = nn.ModuleList(rnn(s, hidden_size, batch_first=True) for s in sizes)
        self.dropout = nn.Dropout(dropout)
        self.output_size = 2 * hidden_size

    def _run(self, rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor, packed: bool) -> torch.Tensor:
        if not packed:
            return rnn(x)[0]
        out = rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))[0]
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, packed: bool = True):
        for layer, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns)):
            if layer:
                x = self.dropout(x)
            out_f = self._run(fwd, x, lengths, packed)
            out_b = reverse_padded(self._run(bwd, reverse_padded(x, lengths), lengths, packed), lengths)
            x = torch.cat([out_f, out_b], dim=-1)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, x.size(2) // 2)
        final = torch.cat([torch.gather(out_f, 1, last).squeeze(1), out_b[:, 0]], dim=-1)
        return x, final
