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

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.models.backbones import adapt_tfidf
from mmgenre.models.probe import TFIDF, feature_kind
from mmgenre.training.logistic import fit_logistic

# The encoders' linear probes chose C 0.003 (MiniLM) and 0.1 (EfficientNet-Lite0) on dev; TF-IDF
# alone wants more (1-3): the grid spans all of them.
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
GRAPH_CHECK_ROWS = 8  # dev rows run through the whole graph to check the cached features
GRAPH_CHECK_TOLERANCE = 1e-4


class FeatureMismatch(ValueError):
    """The saved graph and the cached features disagree: the model would not reproduce its scores."""


def _encoder_features(feature, rows, precision):
    from mmgenre.encoders.embedding_cache import cached_embeddings

    kind = feature_kind(feature)
    dense = cached_embeddings(feature, kind, rows["overview" if kind == "text" else "poster"],
                              precision=precision)
    return dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)


def feature_block(model, feature, rows, precision: str = "float32") -> np.ndarray:
    """(n, dim) float32 features of ``rows`` for one block: what layer "<feature>_l2" of
    ``model`` computes (behind int8 encoders at ``precision`` "int8"), from the embedding
    cache for an encoder."""
    if feature == TFIDF:
        # The graph's own layers called eagerly, 256 overviews at a time: a Model(...).predict
        # per split traced a new function each time, and TensorFlow warned of retracing in
        # every run (the features are the same to the bit).
        layers = [model.get_layer(name) for name in ("tfidf", "tfidf_weighting", "tfidf_l2")]
        texts = [t if isinstance(t, str) else "" for t in rows["overview"]]
        blocks = []
        for start in range(0, len(texts), 256):
            x = tf.constant(texts[start:start + 256])
            for layer in layers:
                x = layer(x)
            blocks.append(np.asarray(x, np.float32))
        return np.concatenate(blocks) if blocks else np.zeros((0, layers[1].units), np.float32)
    return _encoder_features(feature, rows, precision).astype("float32")


def split_features(model, features, rows, precision: str = "float32"):
    """(n, dim) CSR matrix of the probe's concatenated features for ``rows``: what the
    "features" layer of ``model`` computes, from the caches where there is one."""
    return sp.hstack([sp.csr_matrix(feature_block(model, f, rows, precision))
                      for f in features]).tocsr()


def adapt_text_features(model, features, prepared):
    """Fits the model's TF-IDF (when it has one) on the train overviews."""
    if TFIDF in features:
        train_rows = prepared.splits["train"][0]
        adapt_tfidf(model, [t if isinstance(t, str) else "" for t in train_rows["overview"]])


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


def check_image_size(features, image_size):
    """Raises FeatureMismatch when ``image_size`` (data.image_size, the poster input) is not
    each image encoder's own size (its cached embeddings use that size), before anything is
    built or computed."""
    from mmgenre.encoders.loading import encoder_settings
    from mmgenre.encoders.sources import resolve

    for feature in features:
        if feature != TFIDF and feature_kind(feature) == "image":
            size = int(encoder_settings(resolve(feature, "image"))["image_size"])
            given = tuple(image_size)
            if given != (size, size):
                raise FeatureMismatch(f"{feature} embeds posters at {size}x{size}; set "
                                      f"data.image_size: [{size}, {size}] (got {list(given)})")


def build_over_encoders(cfg, prepared, features, log=print):
    """The model of ``cfg`` once its encoders are prepared (pinned, hash-checked packages;
    idempotent) and the poster size checked against theirs."""
    from mmgenre.encoders import sources
    from mmgenre.training.fit import build_for_data

    for feature in features:
        if feature in sources.KNOWN:
            log(f"encoder {feature}: {sources.prepare(feature)}")
    check_image_size(features, cfg.data.image_size)
    return build_for_data(cfg, prepared)


def fit_linear_probe(model, params: dict, prepared, cfg, log=print):
    """Solves ``model``'s head on ``prepared``'s train split and sets its weights.

    Args:
        model: a "linear_probe" model (``mmgenre.models.probe``).
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


def check_graph(model, data_cfg, prepared, cached_probs, rows: int = GRAPH_CHECK_ROWS):
    """Runs the first dev rows through the whole graph (raw inputs; a Keras model or an
    ``Int8Pipeline``) and raises FeatureMismatch when its probabilities differ from those
    of the cached features."""
    from mmgenre.data.prepare import make_split_dataset

    dev_rows, dev_y = prepared.splits["dev"]
    if dev_rows.empty:
        return 0.0
    n = min(rows, len(dev_rows))
    ds = make_split_dataset(data_cfg, prepared, "dev", raw_text=True).unbatch().take(n).batch(n)
    x, _ = next(iter(ds))  # one batch of n rows; predict_on_batch: Keras or an Int8Pipeline
    diff = float(np.max(np.abs(np.asarray(model.predict_on_batch(x)) - cached_probs[:n])))
    if not diff <= GRAPH_CHECK_TOLERANCE:
        raise FeatureMismatch(
            f"the saved graph's probabilities differ from the cached features' by {diff:.2e} on "
            f"{n} dev movies (tolerance {GRAPH_CHECK_TOLERANCE}): an encoder cache is stale or "
            "data.image_size is not the encoder's own size")
    return diff
