"""The k-fold loop: each train movie's logits from the fit that did not see it.

Out-of-fold logits choose a probe's C, score a head search's trials and fit
the calibration without dev (193 movies rank encoders differently from k-fold
train scores on the paired set).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold

from mmgenre.training.logistic import fit_logistic


def out_of_fold(y, folds, seed, fit_predict):
    """(n, genres) logits of each train row from the fit that did not see it:
    ``fit_predict(fold, fit_rows, held_out)`` fits on ``fit_rows`` and returns the held-out logits."""
    out = np.zeros(y.shape, np.float64)
    for fold, (fit_rows, held_out) in enumerate(KFold(int(folds), shuffle=True,
                                                      random_state=seed).split(y)):
        out[held_out] = fit_predict(fold, fit_rows, held_out)
    return out


def out_of_fold_logits(x, y, c, folds, seed=0):
    """(n, genres) out-of-fold logits of the regression with inverse L2 strength ``c``."""
    def fit_predict(fold, fit_rows, held_out):
        w, b = fit_logistic(x[fit_rows], y[fit_rows], c, seed)
        return x[held_out] @ w + b

    return out_of_fold(y, folds, seed, fit_predict)
