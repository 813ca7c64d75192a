"""Run by test_training: train a few steps streaming a big corpus; print peak RSS (MB) and what
was trained, as JSON."""

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config  # noqa: E402
from training.trainer import Trainer  # noqa: E402

trainer = Trainer(load_config(None, sys.argv[1:]))
result = trainer.train()
trainer.close()
print(json.dumps({"step": result["step"], "sampled": len(trainer.train_text),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
