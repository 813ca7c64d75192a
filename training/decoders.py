"""Attentional RNN decoder with input feeding (Luong et al. 2015, sections 3 and 3.3).

One step:  s_t = RNN([y_{t-1}; h~_{t-1}], s_{t-1})          (input feeding)
           c_t, a_t = attention(s_t, keys, memory)            (eq. 7)
           h~_t = tanh(W_c [s_t; c_t; y_{t-1}])                (eq. 5, with the embedding: "deep output")
The output layer maps h~_t to vocabulary logits (eq. 6). State entries have batch on axis 0:
hidden (B, H), cell (B, H) for LSTM only, feed (B, O) the previous attentional vector.
"""

from __future__ import annotations

import torch
from torch import nn

from training.attention import build_attention


class AttentionDecoder(nn.Module):
    def __init__(self, rnn_type: str, emb_size: int, hidden_size: int, memory_size: int,
                 attention: str, attention_size: int, output_size: int, dropout: float,
                 input_feeding: bool = True) -> None:
        super().__init__()
        self.rnn_type = rnn_type
        self.input_feeding = input_feeding
        self.output_size = output_size
        cell = nn.GRUCell if rnn_type == "gru" else nn.LSTMCell
        self.rnn = cell(emb_size + (output_size if input_feeding else 0), hidden_size)
        self.attention = build_attention(attention, hidden_size, memory_size, attention_size)
        self.bridge = nn.Linear(memory_size, hidden_size)
        self.output_layer = nn.Linear(hidden_size + memory_size + emb_size, output_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, final: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder final states (B, M) -> initial decoder state (Bahdanau et al. 2015, A.2.2)."""
        hidden = torch.tanh(self.bridge(final))
        state = {"hidden": hidden,
                 "feed": hidden.new_zeros(hidden.size(0), self.output_size)}
        if self.rnn_type == "lstm":
            state["cell"] = torch.zeros_like(hidden)
        return state

    def forward(self, prev_emb, state, memory, keys, mask):
        """prev_emb (B, E) -> attentional vector (B, O), attention (B, S), new state."""
        rnn_input = torch.cat([prev_emb, state["feed"]], -1) if self.input_feeding else prev_emb
        if self.rnn_type == "lstm":
            hidden, cell = self.rnn(rnn_input, (state["hidden"], state["cell"]))
        else:
            hidden, cell = self.rnn(rnn_input, state["hidden"]), None
        context, weights = self.attention(hidden, keys, memory, mask)
        out = torch.tanh(self.output_layer(self.dropout(torch.cat([hidden, context, prev_emb], -1))))
        new_state = {"hidden": hidden, "feed": out}
        if cell is not None:
            new_state["cell"] = cell
        return out, weights, new_state
