"""One L2-regularised logistic regression per genre, solved by scikit-learn's L-BFGS.

This module imports numpy and scikit-learn only: joblib's worker processes
unpickle ``_fit_genre`` by importing it, and a worker that imported TensorFlow
(through the probe module beside it) cost about 750 MB and printed TensorFlow's
start-up banners (measured on the README's first command: 4.35 GB peak with two
workers).
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression


def _fit_genre(x, y, c, seed):
    """(coef (dim,), intercept) of one genre; a genre with one class here gets its log-odds."""
    if y.min() == y.max():
        rate = np.clip(y.mean(), 1e-3, 1 - 1e-3)
        return np.zeros(x.shape[1]), float(np.log(rate / (1 - rate)))
    # class_weight="balanced": rare genres would otherwise never pass 0.5 (the calibration after
    # it maps the scores back to probabilities).
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x, y)
    return model.coef_[0], float(model.intercept_[0])


def fit_logistic(x, y, c, seed=0, jobs=-1):
    """(weights (dim, genres), bias (genres,)) of one regression per genre of (n, genres) ``y``
    on (n, dim) ``x``, the genres solved in parallel."""
    fits = Parallel(n_jobs=jobs)(delayed(_fit_genre)(x, y[:, g], c, seed) for g in range(y.shape[1]))
    return np.stack([w for w, _ in fits], axis=1), np.array([b for _, b in fits])
