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


LOSSES = ("crossentropy", "focal")


def loss_for(task: str, loss: str = "crossentropy", label_smoothing: float = 0.0):
    """Cross-entropy, or focal loss (Lin et al. 2017) for imbalanced genres.

    The multi-label focal loss uses class balancing (alpha=0.25 on positives) and
    gamma=2, the paper's defaults; it down-weights the many easy negatives.
    """
    if loss not in LOSSES:
        raise ValueError(f"train.loss must be one of {list(LOSSES)}, got {loss!r}")
    if task == "multilabel":
        if loss == "focal":
            return keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                        gamma=2.0, label_smoothing=label_smoothing,
                                                        name="focal")
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing, name="bce")
    if loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(label_smoothing=label_smoothing, name="focal")
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, name="cce")


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
