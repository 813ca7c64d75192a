"""Run by test_training: train a few steps streaming a big corpus; print peak RSS (MB) and what
was trained, as JSON."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config  # noqa: E402
from training.trainer import Trainer  # noqa: E402

trainer = Trainer(load_config(None, sys.argv[1:]))
result = trainer.train()
trainer.close()
# VmHWM: this program's peak resident memory (getrusage's maxrss would include the parent's
# memory at fork time, which Linux carries across exec)
peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
print(json.dumps({"step": result["step"], "sampled": len(trainer.train_text), "peak_rss_mb": peak_kb / 1024}))
