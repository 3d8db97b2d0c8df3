"""Matplotlib figures: training curves, per-genre F1, model comparisons."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenre.config import metric_direction  # noqa: E402
from mmgenre.files import atomic_path  # noqa: E402


def save_figure(fig, path: str):
    """Writes ``fig`` under a temporary name, then renames it: a kill leaves no half PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def training_curves(history: pd.DataFrame, path: str, title: str = ""):
    """Loss and every validation metric against epoch, train and val side by side."""
    metrics = [c for c in history.columns if c != "epoch" and not c.startswith("val_")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        # Markers: a one-epoch run is a point, which a bare line would not draw.
        ax.plot(history["epoch"] + 1, history[name], "o-", label="train")
        if f"val_{name}" in history:
            ax.plot(history["epoch"] + 1, history[f"val_{name}"], "o-", label="dev")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def confusion_matrix(matrix, genres, path: str, title: str = ""):
    """Confusion matrix heat map, genre names on both axes (rows true, columns predicted)."""
    import numpy as np

    matrix = np.asarray(matrix)
    size = 0.45 * len(genres) + 2
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(genres)), genres, rotation=90)
    ax.set_yticks(range(len(genres)), genres)
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def per_genre_f1(per_genre: pd.DataFrame, path: str, title: str = ""):
    """Horizontal bars of F1 per genre, with the test support in the label."""
    frame = per_genre.sort_values("support")
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(frame) + 1.2))
    ax.barh([f"{g} (n={s})" for g, s in zip(frame["genre"], frame["support"])], frame["f1"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (thresholds chosen on dev)")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def objective_over_trials(trials: pd.DataFrame, objective: str, path: str):
    """Each trial's objective, with the best-so-far line."""
    done = trials.dropna(subset=["objective"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(done) + 1), done["objective"], "o", label="trial")
    if len(done):
        best = (done["objective"].cummin() if metric_direction(objective) == "min"
                else done["objective"].cummax())
        ax.plot(range(1, len(done) + 1), best, "-", label="best so far")
    ax.set_xlabel("completed trial")
    ax.set_ylabel(objective)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
