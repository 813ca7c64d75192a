"""The PyTorch engine: the model behind the engine interface of `nmt.engine`, for validation
and evaluation. State travels as numpy arrays (zero-copy), like the ONNX Runtime engine's."""

from __future__ import annotations

import numpy as np
import torch

from nmt.engine import RecurrentState
from nmt.tokenizer import BOS_ID, EOS_ID
from training.model import Seq2Seq


class TorchEngine(RecurrentState):
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, model: Seq2Seq, packed: bool = True) -> None:
        self.model = model
        self.packed = packed
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray,
               shortlist: np.ndarray | None = None) -> dict[str, np.ndarray]:  # no shortlist here
        self.model.eval()
        state = self.model.encode(self._tensor(src_ids), self._tensor(src_lengths), self.packed)
        return {k: v.cpu().numpy() for k, v in state.items()}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @torch.inference_mode()
    def step(self, prev_ids: np.ndarray, state: dict[str, np.ndarray], k: int):
        self.model.eval()
        tstate = {name: self._tensor(v) for name, v in state.items()}
        log_probs, attention, new_state = self.model.decode_step(self._tensor(prev_ids), tstate)
        top = torch.topk(log_probs, min(k, log_probs.size(-1)), dim=-1)
        new = {name: (v.cpu().numpy() if name not in self.SOURCE_KEYS else state[name])
               for name, v in new_state.items()}
        return top.values.cpu().numpy(), top.indices.cpu().numpy(), attention.cpu().numpy(), new
