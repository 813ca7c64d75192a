"""Run by torchrun in test_training: train, then write a digest of this rank's parameters."""

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config  # noqa: E402
from training.trainer import Trainer  # noqa: E402

trainer = Trainer(load_config(None, sys.argv[2:]))
trainer.train()
trainer.close()
digest = hashlib.sha256()
for value in trainer.model.state_dict().values():
    digest.update(value.numpy().tobytes())
Path(sys.argv[1], f"rank{os.environ['RANK']}.sha256").write_text(digest.hexdigest())
