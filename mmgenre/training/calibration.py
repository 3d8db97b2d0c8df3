"""Calibration of out-of-fold logits: per-genre Platt scaling (Platt 1999) and the sigmoid.

Fitted in training on logits of train movies that their own fit never saw
(``mmgenre.training.cross_validation``), then stored in the model's "genres"
layer (``mmgenre.models.layers``) so the saved graph outputs calibrated
probabilities.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def platt(logits, y):
    """(scale, offset) per genre: sigmoid(scale * z + offset) fitted to the 0/1 targets."""
    scale, offset = np.ones(y.shape[1]), np.zeros(y.shape[1])
    for g in range(y.shape[1]):
        if y[:, g].min() == y[:, g].max():
            continue
        fit = LogisticRegression(C=1e4, max_iter=1000).fit(logits[:, g:g + 1], y[:, g])
        scale[g], offset[g] = fit.coef_[0, 0], fit.intercept_[0]
    return scale, offset


def calibrate(model, oof_logits, y, calibration: str):
    """Fits ``calibration`` ("platt", or "none": plain sigmoid) on out-of-fold train logits
    (n, genres) and sets it into ``model``'s "genres" layer; returns (scale, offset)."""
    scale, offset = (platt(oof_logits, y) if calibration == "platt"
                     else (np.ones(y.shape[1]), np.zeros(y.shape[1])))
    model.get_layer("genres").set_weights([scale.astype("float32"), offset.astype("float32")])
    return scale, offset


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))
