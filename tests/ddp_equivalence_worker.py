"""Run in test_training, once with torchrun (2 ranks) and once alone: a few optimizer steps on the
same global batches; writes the global losses and the parameters (rank 0 / the single process)."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config  # noqa: E402
from training.trainer import Trainer  # noqa: E402

out, steps = Path(sys.argv[1]), int(sys.argv[2])
trainer = Trainer(load_config(None, sys.argv[3:]), resume=False)
batches = trainer.epoch_batches(0)  # world 2: this rank's share, batches[rank::2]; alone: all of them
losses = []
for k in range(steps):
    if trainer.world > 1:
        src, tgt = batches[k]
    else:  # the union of what rank 0 and rank 1 take at step k
        src, tgt = batches[2 * k][0] + batches[2 * k + 1][0], batches[2 * k][1] + batches[2 * k + 1][1]
    loss_sum, tokens = trainer.train_step(src, tgt)
    losses.append(loss_sum / tokens)
if trainer.main:
    name = "ddp" if trainer.world > 1 else "single"
    (out / f"{name}.json").write_text(json.dumps(losses))
    torch.save(trainer.model.state_dict(), out / f"{name}.pt")
trainer.close()
