"""Metrics on predicted probabilities, computed with scikit-learn (no TensorFlow).

Multi-label (the MM-IMDb protocol): micro/macro/weighted/samples F1, at 0.5 and
at the thresholds a run fitted in training (its thresholds.json); mean
average precision over genres with at least one positive; top-1 accuracy (the highest-scoring genre is one of
the true ones); subset accuracy; calibration (Brier score and expected
calibration error, ``calibration_metrics``); per-genre precision/recall/F1/AP.
Single-label: accuracy, macro F1, Brier score, top-label ECE and a confusion matrix.

Macro averages run over every genre in the vocabulary, so a model that never
predicts a genre pays for it (zero_division=0).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mmgenre import tasks

HEADLINE = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "top1_accuracy",
            "subset_accuracy", "brier", "ece")
# The results tables' columns (benchmarks/accuracy.py), the most read first.
TABLE_COLUMNS = ("micro_f1", "macro_f1", "mAP", "top1_accuracy", "brier", "ece", "weighted_f1",
                 "samples_f1")
ECE_BINS = 15  # Guo et al. 2017


def expected_calibration_error(confidence, correct, bins: int = ECE_BINS) -> float:
    """ECE (Naeini et al. 2015, Guo et al. 2017): over equal-width confidence bins, the
    size-weighted mean |fraction correct - mean confidence|. Inputs are flat arrays."""
    confidence, correct = np.ravel(confidence), np.ravel(correct).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / max(len(confidence), 1))


def calibration_metrics(y_true, y_prob) -> dict:
    """Multi-label calibration over every (movie, genre) pair: Brier score (mean squared
    error of the probabilities) and ECE of "this genre applies" at each probability."""
    y_true, y_prob = np.asarray(y_true, float), np.asarray(y_prob, float)
    return {"brier": float(np.mean((y_prob - y_true) ** 2)),
            "ece": expected_calibration_error(y_prob, y_true)}


def average_precisions(y_true: np.ndarray, y_score: np.ndarray, weights=None) -> np.ndarray:
    """(draws, n_genres) average precision of each genre, NaN for a genre without a positive.

    scikit-learn's ``average_precision_score`` per genre: the sum over distinct scores of
    (new true positives / all positives) x precision there. Sorting each genre once replaces
    one scikit-learn call per genre, whose input checks cost about 1 ms each (a tiny run's
    reports made 160 of them). ``weights`` (draws, n) weighs each movie per draw: a bootstrap
    resample that draws a movie k times is the data with weight k on it (copies tie, so they
    enter at one threshold), and every resample is scored at once (a thousand scikit-learn
    calls per genre and model cost the large set's headline about 3 minutes). Default: one
    draw, every movie once.
    """
    truth, scores = np.asarray(y_true, bool), np.asarray(y_score)
    weights = np.ones((1, len(truth)), np.int64) if weights is None else np.asarray(weights)
    per_genre = np.full((len(weights), truth.shape[1]), np.nan)
    for g in range(truth.shape[1]):
        order = np.argsort(-scores[:, g], kind="stable")
        ranked = scores[order, g]
        # The last position of each run of equal scores: precision is read there.
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
        drawn_weights = weights[:, order]
        true_pos = np.cumsum(drawn_weights * truth[order, g], axis=1)[:, ends]
        drawn = np.cumsum(drawn_weights, axis=1)[:, ends]
        positives = true_pos[:, -1]
        new_pos = np.diff(true_pos, axis=1, prepend=0)
        precision = np.divide(true_pos, drawn, out=np.zeros(true_pos.shape), where=drawn > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_genre[:, g] = np.where(positives > 0,
                                       (new_pos * precision).sum(axis=1) / positives, np.nan)
    return per_genre


def mean_average_precision(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Macro average precision over genres with at least one positive."""
    per_genre = average_precisions(y_true, y_prob)[0]
    return float(np.nanmean(per_genre)) if np.isfinite(per_genre).any() else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 of (n, n_genres) 0/1 targets and predictions over the genres with a positive
    here (0.0 when none has)."""
    y_true = np.asarray(y_true).astype(int)
    present = np.flatnonzero(y_true.sum(axis=0) > 0)
    if not len(present):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skm.f1_score(y_true, np.asarray(y_pred).astype(int), average="macro",
                                  zero_division=0, labels=present))


def multilabel_metrics(y_true: np.ndarray, y_prob: np.ndarray, thresholds=0.5) -> dict:
    """Headline metrics for (n, n_genres) 0/1 targets and probabilities.

    Macro-F1 averages over the genres with at least one positive here, like mAP:
    on another dataset a genre it never lists would otherwise count as F1 0
    (``genres_without_positives`` says how many were left out).
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_prob) >= np.asarray(thresholds)).astype(int)
    present = np.flatnonzero(y_true.sum(axis=0) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1 = {avg: float(skm.f1_score(y_true, y_pred, average=avg, zero_division=0))
              for avg in ("micro", "weighted", "samples")}
    f1["macro"] = macro_f1(y_true, y_pred)
    top = np.argmax(y_prob, axis=1)
    return {
        "micro_f1": f1["micro"], "macro_f1": f1["macro"], "weighted_f1": f1["weighted"],
        "samples_f1": f1["samples"],
        "mAP": mean_average_precision(y_true, y_prob),
        "top1_accuracy": float(np.mean(y_true[np.arange(len(top)), top] == 1)),
        "subset_accuracy": float(np.mean((y_true == y_pred).all(axis=1))),
        **calibration_metrics(y_true, y_prob),
        "genres_without_positives": int(y_true.shape[1] - len(present)),
    }


def per_genre_table(y_true, y_prob, genres, thresholds=0.5) -> pd.DataFrame:
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_prob) >= np.asarray(thresholds)).astype(int)
    p, r, f, support = skm.precision_recall_fscore_support(y_true, y_pred, average=None,
                                                           zero_division=0)
    ap = average_precisions(y_true, y_prob)[0]  # NaN where the genre has no positive (support 0)
    return pd.DataFrame({"genre": genres, "precision": p, "recall": r, "f1": f,
                         "average_precision": ap, "support": support,
                         "threshold": np.broadcast_to(thresholds, (len(genres),))})


def single_label_metrics(y_true_onehot, y_prob, genres) -> dict:
    true = np.argmax(y_true_onehot, axis=1)
    pred = np.argmax(y_prob, axis=1)
    labels = list(range(len(genres)))
    y_prob = np.asarray(y_prob, float)
    return {
        "accuracy": float(np.mean(true == pred)),
        "macro_f1": float(skm.f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
        "brier": float(np.mean(np.sum((y_prob - np.asarray(y_true_onehot, float)) ** 2, axis=1))),
        "ece": expected_calibration_error(y_prob.max(axis=1), true == pred),
        "confusion_matrix": skm.confusion_matrix(true, pred, labels=labels).tolist(),
    }


def single_label_per_genre(y_true_onehot, y_prob, genres) -> pd.DataFrame:
    """Per-genre precision, recall and F1 of the argmax prediction, with test support."""
    true, pred = np.argmax(y_true_onehot, axis=1), np.argmax(y_prob, axis=1)
    p, r, f, support = skm.precision_recall_fscore_support(
        true, pred, labels=list(range(len(genres))), zero_division=0)
    return pd.DataFrame({"genre": genres, "precision": p, "recall": r, "f1": f, "support": support})


def prior_probabilities(frequencies: np.ndarray, n: int) -> np.ndarray:
    """The constant baseline: every movie gets the train frequency of each genre.

    At threshold 0.5 it predicts the genres on more than half the train movies
    ({Comedy, Drama} on the sample set); its AP per genre equals prevalence.
    """
    return np.tile(np.asarray(frequencies, float)[np.newaxis], (n, 1))


def evaluate_split(y_true, y_prob, task: str, genres, dev_thresholds=None) -> dict:
    """All metrics for one split; multi-label rows at 0.5 and at dev thresholds."""
    if not tasks.get(task).uses_thresholds:
        return {"single": single_label_metrics(y_true, y_prob, genres)}
    out = {"at_0.5": multilabel_metrics(y_true, y_prob, 0.5)}
    if dev_thresholds is not None:
        out["tuned"] = multilabel_metrics(y_true, y_prob, dev_thresholds)
    return out
