"""The genre head every gradient-trained family ends in; losses and metrics come from the task
(``mmgenre.tasks``: sigmoid per genre for multilabel, softmax for single)."""

from __future__ import annotations

import keras

from mmgenre import tasks
from mmgenre.config import LOSSES


def check_rates(**rates):
    """Raises ValueError naming the first dropout-like rate outside [0, 1) (builders' argument check)."""
    for key, value in rates.items():
        if not 0 <= value < 1:
            raise ValueError(f"{key} must be in [0, 1), got {value}")


def genre_head(features, num_genres: int, task: str = "multilabel"):
    """(batch, dim) features -> (batch, num_genres) probabilities, layer "genres".

    The head runs in float32 even under a mixed-precision policy, so
    probabilities near 0 and 1 keep their precision.
    """
    if num_genres < 1:
        raise ValueError(f"num_genres must be >= 1, got {num_genres}")
    return keras.layers.Dense(num_genres, activation=tasks.get(task).activation, dtype="float32",
                              name="genres")(features)


def loss_for(task: str, loss: str = "crossentropy", label_smoothing: float = 0.0,
             positive_rate=None):
    """The task's loss of kind ``loss`` (``mmgenre.tasks``); "balanced" needs ``positive_rate``,
    each genre's train frequency (n_genres,)."""
    if loss not in LOSSES:
        raise ValueError(f"train.loss must be one of {list(LOSSES)}, got {loss!r}")
    return tasks.get(task).loss(loss, label_smoothing, positive_rate)


def metrics_for(task: str, num_genres: int):
    """Training-time metrics of the task (the headline F1/mAP are computed after training)."""
    return tasks.get(task).metrics(num_genres)
