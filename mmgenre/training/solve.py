"""Fit a linear probe's head in closed loop on cached features: C by cross-validation, Platt.

The probe's backbones are frozen, so their features are computed once
(encoder embeddings from ``mmgenre.encoders.embedding_cache``, shared by every run on the
same movies; TF-IDF from the model's own adapted TextVectorization) and the
head is a convex problem: each genre's L2-regularised logistic regression is
solved by scikit-learn's L-BFGS and copied into the model's Dense "logits"
layer (why not model.fit: SGD reaches the same optimum only approximately and
much more slowly; copying makes the Keras model the regression itself).

Honest selection on small data: C is chosen on ``folds``-fold out-of-fold
train mAP (the 193-movie dev split ranked encoders the other way round from
cross-validation on the paired set), and the same out-of-fold logits fit each
genre's Platt scale and offset. Dev and test are only scored.
"""

from __future__ import annotations

import time

from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.training.calibration import calibrate, sigmoid
from mmgenre.training.cross_validation import out_of_fold_logits
from mmgenre.training.logistic import fit_logistic
from mmgenre.training.probe_features import adapt_text_features, split_features

# The encoders' linear probes chose C 0.003 (MiniLM) and 0.1 (EfficientNet-Lite0) on dev; TF-IDF
# alone wants more (1-3): the grid spans all of them.
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def fit_linear_probe(model, params: dict, prepared, cfg, log=print):
    """Solves ``model``'s head on ``prepared``'s train split and sets its weights.

    Args:
        model: a "linear_probe" model (``mmgenre.models.probe``), or the
            ``training.fit.HeadFirst`` standing in for it until the fit is done.
        params: its hyperparameters (features, c, folds, calibration).
        prepared: mmgenre.data.prepare.PreparedData.
        cfg: the experiment (train.seed seeds the folds and the solver).

    Returns:
        (probabilities {split: (n, genres)} for dev and test computed from the
        cached features, calibrated out-of-fold train probabilities (n_train,
        genres), extra facts for metrics.json: C, the cross-validated mAP per C,
        seconds).
    """
    started = time.time()
    features, folds, seed = list(params["features"]), int(params["folds"]), cfg.train.seed
    y_train = prepared.splits["train"][1]
    adapt_text_features(model, features, prepared)
    precision = params.get("precision", "float32")
    x = {s: split_features(model, features, prepared.splits[s][0], precision)
         for s in ("train", "dev", "test") if not prepared.splits[s][0].empty}
    log(f"features: {x['train'].shape[1]} per movie ({' + '.join(features)}, {precision}), "
        f"{time.time() - started:.1f} s")
    grid = [float(params["c"])] if params.get("c") else list(C_GRID)
    cv_map, oof = {}, {}
    for c in grid:
        oof[c] = out_of_fold_logits(x["train"], y_train, c, folds, seed)
        cv_map[c] = mean_average_precision(y_train, oof[c])
        log(f"C={c:g}: {folds}-fold train mAP {cv_map[c]:.4f}")
    c = max(grid, key=lambda k: cv_map[k])
    weights, bias = fit_logistic(x["train"], y_train, c, seed)
    model.get_layer("logits").set_weights([weights.astype("float32"), bias.astype("float32")])
    scale, offset = calibrate(model, oof[c], y_train, params["calibration"])
    probs = {s: sigmoid(scale * (m @ weights + bias) + offset).astype("float32")
             for s, m in x.items() if s != "train"}
    log(f"chose C={c:g}; head solved in {time.time() - started:.1f} s")
    extra = {"C": c, "cv_train_mAP": cv_map[c],
             "cv_mAP": {f"{k:g}": round(v, 4) for k, v in cv_map.items()},
             "folds": folds, "calibration": params["calibration"],
             "solve_seconds": round(time.time() - started, 1)}
    return probs, sigmoid(scale * oof[c] + offset).astype("float32"), extra
