"""Paired bootstrap intervals over movies (Efron & Tibshirani 1993; Koehn 2004 for paired
comparisons): resample the test movies with replacement, score every model on the same
resample, and read the 2.5th and 97.5th percentiles."""

from __future__ import annotations

import numpy as np

from mmgenre.evaluation.metrics import mean_average_precision


def paired_bootstrap(truth: np.ndarray, scores: dict, metric=mean_average_precision,
                     resamples: int = 1000, seed: int = 0, pairs=()) -> dict:
    """95% intervals per model and for differences between models, on shared resamples.

    Args:
        truth: (n, n_genres) 0/1 targets.
        scores: {model name: (n, n_genres) scores}.
        metric: f(truth, scores) -> float (default: mean average precision).
        resamples: bootstrap resamples of the n movies.
        pairs: (a, b) model names whose difference a - b gets an interval.

    Returns:
        {name: (point, low, high)} and {"a - b": (point, low, high)} for each pair.
    """
    rng = np.random.default_rng(seed)
    n = len(truth)
    draws = {name: [] for name in scores}
    for _ in range(resamples):
        index = rng.integers(0, n, n)
        for name, s in scores.items():
            draws[name].append(metric(truth[index], s[index]))
    out = {}
    for name, s in scores.items():
        low, high = np.percentile(draws[name], [2.5, 97.5])
        out[name] = (float(metric(truth, s)), float(low), float(high))
    for a, b in pairs:
        diff = np.asarray(draws[a]) - np.asarray(draws[b])
        low, high = np.percentile(diff, [2.5, 97.5])
        out[f"{a} - {b}"] = (out[a][0] - out[b][0], float(low), float(high))
    return out
