"""Classification heads and losses for the two tasks.

multilabel: one sigmoid per genre, binary cross-entropy (the MM-IMDb standard).
single: softmax over genres, categorical cross-entropy (the original study).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mmgenre.config import LOSSES

ACTIVATIONS = {"multilabel": "sigmoid", "single": "softmax"}


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
    if task not in ACTIVATIONS:
        raise ValueError(f"task must be one of {list(ACTIVATIONS)}, got {task!r}")
    if num_genres < 1:
        raise ValueError(f"num_genres must be >= 1, got {num_genres}")
    return keras.layers.Dense(num_genres, activation=ACTIVATIONS[task], dtype="float32",
                              name="genres")(features)




@keras.saving.register_keras_serializable(package="mmgenre")
class BalancedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with each genre's positives and negatives reweighted.

    A genre with train frequency p weighs its positives 1 / (2p) and its
    negatives 1 / (2(1 - p)), scikit-learn's class_weight="balanced" (which the
    TF-IDF + logistic regression baseline uses): a genre on 3% of movies
    contributes as much signal from its positives as from its negatives.

    Args:
        positive_rate: list of float, (n_genres,) train frequency of each genre.
        label_smoothing: float in [0, 1).
    """

    def __init__(self, positive_rate, label_smoothing: float = 0.0, name="balanced_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_rate = [float(p) for p in positive_rate]
        self.label_smoothing = float(label_smoothing)
        rate = np.clip(np.asarray(self.positive_rate, "float32"), 1e-3, 1 - 1e-3)
        self._w_pos, self._w_neg = 0.5 / rate, 0.5 / (1.0 - rate)

    def call(self, y_true, y_pred):
        """(batch, n_genres) targets and probabilities -> (batch,) loss."""
        y_true = ops.cast(y_true, y_pred.dtype)
        y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        y_pred = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        loss = -(self._w_pos * y_true * ops.log(y_pred)
                 + self._w_neg * (1.0 - y_true) * ops.log(1.0 - y_pred))
        return ops.mean(loss, axis=-1)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction,
                "positive_rate": self.positive_rate, "label_smoothing": self.label_smoothing}


def loss_for(task: str, loss: str = "crossentropy", label_smoothing: float = 0.0,
             positive_rate=None):
    """Cross-entropy, balanced cross-entropy, or focal loss (Lin et al. 2017).

    The multi-label focal loss uses class balancing (alpha=0.25 on positives) and
    gamma=2, the paper's defaults; it down-weights the many easy negatives.
    "balanced" needs ``positive_rate``, each genre's train frequency (n_genres,).
    """
    if loss not in LOSSES:
        raise ValueError(f"train.loss must be one of {list(LOSSES)}, got {loss!r}")
    if loss == "balanced":
        if task != "multilabel":
            raise ValueError('train.loss "balanced" is for data.task multilabel; use "focal" '
                             "or class-balanced single labels (data.single_label_rule: rarest)")
        if positive_rate is None:
            raise ValueError('train.loss "balanced" needs the genres\' train frequencies')
        return BalancedBinaryCrossentropy(positive_rate, label_smoothing)
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
