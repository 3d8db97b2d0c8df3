"""Classification heads and losses for the two tasks.

multilabel: one sigmoid per genre, binary cross-entropy (the MM-IMDb standard).
single: softmax over genres, categorical cross-entropy (the original study).
"""

from __future__ import annotations

import keras

ACTIVATIONS = {"multilabel": "sigmoid", "single": "softmax"}


def genre_head(features, num_genres: int, task: str = "multilabel"):
    """(batch, dim) features -> (batch, num_genres) probabilities, layer "genres".

    The head runs in float32 even under a mixed-precision policy, so
    probabilities near 0 and 1 keep their precision.
    """
    if task not in ACTIVATIONS:
        raise ValueError(f"task must be one of {list(ACTIVATIONS)}, got {task!r}")
    if num_genres < 1:
        raise ValueError(f"num_genres must be >= 1, got {num_genres}")
    return keras.layers.Dense(num_genres, activation=ACTIVATIONS[task], dtype="float32",
                              name="genres")(features)


def loss_for(task: str):
    if task == "multilabel":
        return keras.losses.BinaryCrossentropy(name="bce")
    return keras.losses.CategoricalCrossentropy(name="cce")


def metrics_for(task: str, num_genres: int):
    """Training-time metrics (the headline F1/mAP are computed after training).

    pr_auc over genres (multi_label=True averages per genre) tracks mean average
    precision and is the default checkpoint/early-stopping monitor.
    """
    if task == "multilabel":
        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_genres,
                                  name="pr_auc"),
                keras.metrics.F1Score(average="micro", threshold=0.5, name="micro_f1")]
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]
