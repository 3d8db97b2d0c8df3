"""The prediction task: what a genre head outputs, how it trains and how scores become genres.

Two tasks, one object each; everything that differs between them lives here, and no other
module compares task names (``get(cfg.data.task)`` and use the object):

* "multilabel": one sigmoid per genre, binary cross-entropy (the MM-IMDb standard); a genre
  is predicted when its probability reaches its threshold (chosen on dev or out-of-fold
  train probabilities by a rule, ``mmgenre.training.thresholds.choose``).
* "single": softmax over genres, categorical cross-entropy (the original study); the top
  genre is predicted, there are no thresholds.

A third task (say, ordinal ratings) would be a third subclass registered in ``TASKS``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


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


class Task:
    """What differs between tasks. Attributes:

    name: the config value (data.task).
    activation: the genre head's output activation.
    monitor: the validation metric runs checkpoint and stop early on.
    search_objective: a search's default objective.
    uses_thresholds: whether genres are decided by per-genre thresholds (else the top genre).
    """

    name = activation = monitor = search_objective = ""
    uses_thresholds = True

    def targets(self, vocab, table, rule: str = "rarest") -> np.ndarray:
        """(n, n_genres) float32 targets for ``table``'s genre lists."""
        raise NotImplementedError

    def labelled(self, targets: np.ndarray) -> np.ndarray:
        """(n,) bool: rows the task can learn from (the rest are dropped and counted)."""
        return np.ones(len(targets), bool)

    def decide(self, probs: np.ndarray, thresholds=None) -> np.ndarray:
        """(n, n_genres) bool: the genres predicted from (n, n_genres) probabilities."""
        raise NotImplementedError

    def loss(self, kind: str = "crossentropy", label_smoothing: float = 0.0, positive_rate=None):
        raise NotImplementedError

    def metrics(self, num_genres: int) -> list:
        """Training-time Keras metrics (the headline F1/mAP are computed after training)."""
        raise NotImplementedError


class MultiLabel(Task):
    name, activation, monitor, search_objective = "multilabel", "sigmoid", "val_pr_auc", "val_micro_f1"

    def targets(self, vocab, table, rule="rarest"):
        return vocab.multi_hot(table["genres"])

    def decide(self, probs, thresholds=None):
        probs = np.asarray(probs)
        return probs >= (np.full(probs.shape[-1], 0.5) if thresholds is None else np.asarray(thresholds))

    def loss(self, kind="crossentropy", label_smoothing=0.0, positive_rate=None):
        """Cross-entropy, balanced cross-entropy (needs ``positive_rate``, each genre's train
        frequency) or focal loss (Lin et al. 2017: alpha 0.25 on positives, gamma 2, the
        paper's defaults; it down-weights the many easy negatives)."""
        if kind == "balanced":
            if positive_rate is None:
                raise ValueError('train.loss "balanced" needs the genres\' train frequencies')
            return BalancedBinaryCrossentropy(positive_rate, label_smoothing)
        if kind == "focal":
            return keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                        gamma=2.0, label_smoothing=label_smoothing,
                                                        name="focal")
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing, name="bce")

    def metrics(self, num_genres):
        # pr_auc averaged per genre (multi_label=True) tracks mean average precision and moves
        # from the first epoch, unlike F1 at 0.5: the default monitor.
        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_genres,
                                  name="pr_auc"),
                keras.metrics.F1Score(average="micro", threshold=0.5, name="micro_f1")]


class SingleLabel(Task):
    name, activation, monitor, search_objective = "single", "softmax", "val_accuracy", "val_accuracy"
    uses_thresholds = False

    def targets(self, vocab, table, rule="rarest"):
        """One-hot of the genre ``rule`` picks; all-zero rows for movies without a kept genre
        (``labelled`` drops them)."""
        index = vocab.single_label(table["genres"], rule)
        out = np.zeros((len(index), len(vocab)), np.float32)
        out[np.arange(len(index))[index >= 0], index[index >= 0]] = 1.0
        return out

    def labelled(self, targets):
        return targets.sum(axis=1) > 0

    def decide(self, probs, thresholds=None):
        probs = np.asarray(probs)
        return np.arange(probs.shape[-1]) == probs.argmax(axis=-1)[..., None]

    def loss(self, kind="crossentropy", label_smoothing=0.0, positive_rate=None):
        if kind == "balanced":
            raise ValueError('train.loss "balanced" is for data.task multilabel; use "focal" '
                             "or class-balanced single labels (data.single_label_rule: rarest)")
        if kind == "focal":
            return keras.losses.CategoricalFocalCrossentropy(label_smoothing=label_smoothing,
                                                             name="focal")
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, name="cce")

    def metrics(self, num_genres):
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]


TASKS = {task.name: task for task in (MultiLabel(), SingleLabel())}


def get(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {name!r}")
    return TASKS[name]
