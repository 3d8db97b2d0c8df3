"""Matplotlib figures: training curves, per-genre F1, model comparisons."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenre.config import metric_direction  # noqa: E402
from mmgenre.runs import atomic_path  # noqa: E402


def _save(fig, path: str):
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
    _save(fig, path)


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
    _save(fig, path)


def per_genre_f1(per_genre: pd.DataFrame, path: str, title: str = ""):
    """Horizontal bars of F1 per genre, with the test support in the label."""
    frame = per_genre.sort_values("support")
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(frame) + 1.2))
    ax.barh([f"{g} (n={s})" for g, s in zip(frame["genre"], frame["support"])], frame["f1"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (thresholds chosen on dev)")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def compare_models(table: pd.DataFrame, metrics, path: str, title: str = ""):
    """Grouped horizontal bars: one group per model (top to bottom in table order), one bar
    per metric (mean, with spread if given). Horizontal, so 30+ ablation rows stay readable."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(table) * max(1, len(metrics) / 2) + 1.5))
    height = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        err = table[f"{metric}_std"] if f"{metric}_std" in table else None
        ax.barh([i + k * height for i in range(len(table))], table[metric], height, xerr=err,
                label=metric, capsize=2)
    ax.set_yticks([i + height * (len(metrics) - 1) / 2 for i in range(len(table))])
    ax.set_yticklabels(table["model"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    fig.tight_layout()
    _save(fig, path)


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
    _save(fig, path)


def scaling(by_batch: pd.DataFrame, by_size: pd.DataFrame, path: str):
    """Left: training samples/s against batch size; right: pipeline posters/s against dataset size."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for config, rows in by_batch.groupby("config"):
        for column, style in (("train_cached_pipeline_sps", "-o"), ("train_in_memory_sps", "--x")):
            left.plot(rows["batch_size"], rows[column], style,
                      label=f"{config} {column.replace('train_', '').replace('_sps', '')}")
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("training samples/s")
    left.legend(fontsize=7)
    for cache, rows in by_size.groupby("cache"):
        right.plot(rows["movies"], rows["second_pass_sps"], "-o", label=f"{cache} cache, 2nd pass")
        right.plot(rows["movies"], rows["first_pass_sps"], ":", label=f"{cache} cache, 1st pass")
    right.set_xscale("log")
    right.set_xlabel("movies in dataset")
    right.set_ylabel("pipeline posters/s")
    right.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def learning_curves(table: pd.DataFrame, metrics, path: str):
    """One row of panels per branch, one panel per metric: score against training examples,
    one line per model (the prior dashed), spread over seeds as error bars."""
    branches = list(dict.fromkeys(table["branch"]))
    fig, axes = plt.subplots(len(branches), len(metrics), figsize=(4.5 * len(metrics), 3.4 * len(branches)),
                             squeeze=False)
    for row, branch in zip(axes, branches):
        part = table[table["branch"] == branch]
        for ax, metric in zip(row, metrics):
            for model, line in part.groupby("model", sort=False):
                prior = model.startswith("prior")
                ax.errorbar(line["train_examples"], line[metric], yerr=line.get(f"{metric}_std"),
                            marker="" if prior else "o", linestyle="--" if prior else "-",
                            color="grey" if prior else None, capsize=2, label=model)
            ax.set_xlabel("posters-movielens pretraining posters" if branch == "poster"
                          else "paired train overviews")
            ax.set_title(f"{branch} branch: {metric} (test)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
