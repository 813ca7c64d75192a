"""Learning-curve PNG from the validation log."""

from __future__ import annotations

from pathlib import Path


def learning_curve(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(steps, [r["train_loss"] for r in records], label="train loss / token (label smoothing, dropout)")
    ax1.plot(steps, [r["valid_loss"] for r in records], label="valid loss / token")
    ax1.set_xlabel("step")
    ax1.legend()
    ax2.plot(steps, [r["bleu"] for r in records], marker="o", label="valid BLEU")
    ax2.plot(steps, [r["chrf"] for r in records], marker=".", label="valid chrF")
    ax2.set_xlabel("step")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
