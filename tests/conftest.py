import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.tiny import tiny_corpus, tiny_overrides  # noqa: E402


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_files):
    """A tiny model trained for 40 steps on the tiny corpus: (run directory, best checkpoint)."""
    from training.config import load_config
    from training.trainer import Trainer

    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(load_config(None, tiny_overrides(tiny_files, out, steps=40)))
    trainer.train()
    return out, out / "best.pt"
