"""Attention pictures: the matrix that NMT attention visualisations draw (source tokens across the
top, target tokens down the side, darker for more weight), as a PNG or as terminal text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHADES = "·░▒▓█"


def save_heatmap(weights: np.ndarray, source: list[str], target: list[str], path: str | Path,
                 title: str = "") -> Path:
    """weights (len(target), len(source)) -> PNG. Needs matplotlib (the `plot` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 1.5), max(3.0, 0.4 * rows + 1.2)))
    ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), source, rotation=60, ha="left")
    ax.set_yticks(range(rows), target)
    ax.xaxis.tick_top()
    if title:
        ax.set_title(title, fontsize=9, pad=20)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def text_heatmap(weights: np.ndarray, source: list[str], target: list[str]) -> str:
    """A readable terminal rendering: one shade character per weight, source tokens as columns."""
    width = 3
    label = max((len(t) for t in target), default=0)
    header = [" " * label + " " + "".join(f"{i:>{width}}" for i in range(len(source)))]
    lines = []
    for tok, row in zip(target, weights):
        cells = "".join(SHADES[min(int(w * len(SHADES)), len(SHADES) - 1)] * (width - 1) + " " for w in row)
        lines.append(f"{tok:>{label}} {cells}")
    legend = ["", "columns: " + "  ".join(f"{i}={s}" for i, s in enumerate(source)),
              "shades: " + "  ".join(f"{c} <{(i + 1) / 5:.1f}" for i, c in enumerate(SHADES[:-1]))
              + f"  {SHADES[-1]} >=0.8"]
    return "\n".join(header + lines + legend)
