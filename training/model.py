"""The encoder-decoder with attention: a thin wrapper with explicit methods
(`encode`, `decode_step`, `loss`), no mode strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from training.decoders import AttentionDecoder
from training.encoders import RecurrentEncoder


@dataclass
class ModelConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    rnn_type: str = "gru"  # gru | lstm
    emb_size: int = 256
    encoder_hidden: int = 256  # per direction
    encoder_layers: int = 1
    decoder_hidden: int = 512
    attention: str = "additive"  # additive (Bahdanau) | dot | general (Luong)
    attention_size: int = 512
    output_size: int = 512  # attentional vector h~_t
    dropout: float = 0.3
    input_feeding: bool = True
    tie_embeddings: bool = False  # target embedding = output projection (needs output_size == emb_size)
    pad_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.rnn_type not in ("gru", "lstm"):
            raise ValueError(f"rnn_type must be gru or lstm, got {cfg.rnn_type!r}")
        if cfg.tie_embeddings and cfg.output_size != cfg.emb_size:
            raise ValueError("tie_embeddings needs output_size == emb_size")
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.src_vocab_size, cfg.emb_size, padding_idx=cfg.pad_id)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.emb_size, padding_idx=cfg.pad_id)
        self.encoder = RecurrentEncoder(cfg.rnn_type, cfg.emb_size, cfg.encoder_hidden,
                                        cfg.encoder_layers, cfg.dropout)
        self.decoder = AttentionDecoder(cfg.rnn_type, cfg.emb_size, cfg.decoder_hidden,
                                        self.encoder.output_size, cfg.attention, cfg.attention_size,
                                        cfg.output_size, cfg.dropout, cfg.input_feeding)
        self.generator = nn.Linear(cfg.output_size, cfg.tgt_vocab_size)
        if cfg.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight
        self.emb_dropout = nn.Dropout(cfg.dropout)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor, packed: bool = True) -> dict[str, torch.Tensor]:
        """src (B, S), lengths (B,) -> state: memory (B,S,M), keys (B,S,A), mask (B,S), decoder entries."""
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        memory, final = self.encoder(self.emb_dropout(self.src_embed(src)), lengths, packed)
        state = {"memory": memory, "keys": self.decoder.attention.project_keys(memory), "mask": mask}
        state.update(self.decoder.init_state(final))
        return state

    def decode_step(self, prev_ids: torch.Tensor, state: dict[str, torch.Tensor]):
        """prev_ids (N,) -> log_probs (N, V), attention (N, S), new state (source entries kept)."""
        out, weights, dec = self.decoder(self.emb_dropout(self.tgt_embed(prev_ids)), state,
                                         state["memory"], state["keys"], state["mask"])
        log_probs = F.log_softmax(self.generator(self.emb_dropout(out)), dim=-1)
        return log_probs, weights, {**state, **dec}

    def forward(self, *args, **kwargs):
        """The training objective (`loss`): DDP wraps `forward`, so it must be the loss."""
        return self.loss(*args, **kwargs)

    def loss(self, src, src_lengths, tgt_in, tgt_out, label_smoothing: float = 0.0):
        """Teacher-forced summed cross-entropy and token count. tgt_in starts with BOS,
        tgt_out ends with EOS; both (B, T), padded with pad_id."""
        state = self.encode(src, src_lengths)
        outputs = []
        emb = self.emb_dropout(self.tgt_embed(tgt_in))
        for t in range(tgt_in.size(1)):
            out, _, dec = self.decoder(emb[:, t], state, state["memory"], state["keys"], state["mask"])
            state.update(dec)
            outputs.append(out)
        logits = self.generator(self.emb_dropout(torch.stack(outputs, 1)))
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1),
                               ignore_index=self.cfg.pad_id, label_smoothing=label_smoothing,
                               reduction="sum")
        return loss, int((tgt_out != self.cfg.pad_id).sum())
