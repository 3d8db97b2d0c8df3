"""Train an encoder head on cached features: out-of-fold logits, Platt calibration, final fit.

An "encoder_head" model's backbones are frozen, so each movie's features are
computed once (``probe_features.feature_block``: embedding caches for encoders, the
adapted vectorizer for TF-IDF) and every fit after that trains only the small
head (``mmgenre.models.encoder_head.feature_head``) on arrays, in seconds.
The same k-fold loop scores a search's trials (``mmgenre.tuning.hypermodels``) and
fits the calibration: each train movie's logit comes from the fold that did
not see it, so Platt scaling and the cross-validated mAP never see a movie's
own fit, and dev and test are only scored.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from mmgenre import tasks
from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.models.encoder_head import feature_head
from mmgenre.models.heads import loss_for
from mmgenre.models.predict_step import inference_function
from mmgenre.training import cross_validation
from mmgenre.training.calibration import calibrate, sigmoid
from mmgenre.training.fit import compile_built
from mmgenre.training.probe_features import adapt_text_features, feature_block

HEAD_ARGS = ("fusion", "units", "dropout", "l2", "modality_dropout", "tfidf_weight", "image_weight")


def split_blocks(model, features, prepared, precision: str = "float32") -> dict:
    """{split: {feature: (n, dim) float32}} for every non-empty split (encoders at
    ``precision``); fits TF-IDF on train first."""
    adapt_text_features(model, features, prepared)
    return {split: {f: feature_block(model, f, rows, precision) for f in features}
            for split, (rows, _) in prepared.splits.items() if not rows.empty}


def as_tensors(x: dict) -> dict:
    """{feature: (n, dim) tensor} of arrays ``x``: converted once for every fold and trial (a
    conversion copies: TensorFlow needs 64-byte alignment, NumPy gives 16)."""
    return {f: tf.convert_to_tensor(a) for f, a in x.items()}


def shuffled_batches(x: dict, y: np.ndarray, rows: np.ndarray, batch_size: int, seed: int):
    """tf.data of ({feature: (batch, dim)}, (batch, genres)) batches of movies ``rows`` of ``x``
    {feature: (n, dim) tensor} and ``y`` (n, genres), reshuffled each epoch, gathered batch by
    batch.

    The same batches as ``from_tensor_slices`` over ``x[rows]`` shuffled with ``seed`` (a
    shuffle's order depends only on the count, buffer size and seed), without that pipeline's
    copies of the features: a slice per fold, a tensor of it and a shuffle buffer of every
    movie (the large set's TF-IDF: 0.18-0.22 GB each), which made the head's folds the peak of
    the README's first command (issue 28).
    """
    y, rows = tf.convert_to_tensor(y), tf.constant(rows, tf.int64)

    def take(index):
        picked = tf.gather(rows, index)
        return {f: tf.gather(a, picked) for f, a in x.items()}, tf.gather(y, picked)

    count = int(rows.shape[0])
    return tf.data.Dataset.range(count).shuffle(count, seed=seed).batch(batch_size).map(take)


def train_head(x: dict, y: np.ndarray, params: dict, train_cfg, batch_size: int, seed: int = 0,
               rows: np.ndarray | None = None):
    """A fresh head fitted on movies ``rows`` (default: all) of features ``x`` {feature: (n, dim)
    tensor} (``as_tensors``) and targets ``y`` (n, genres).

    Returns the head (inputs {feature: (batch, dim)} -> (batch, genres) logits).
    """
    keras.utils.set_random_seed(seed)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    head = feature_head({f: a.shape[1] for f, a in x.items()}, y.shape[1],
                        **{k: params[k] for k in HEAD_ARGS})
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")
    trainable = keras.Model(head.inputs, probabilities(head.outputs[0]))
    # A head on cached features is multi-label (probe.check_probe_args): one sigmoid per genre.
    compile_built(trainable, keras.optimizers.Adam(train_cfg.learning_rate),
                  loss_for(tasks.MultiLabel.name, train_cfg.loss, train_cfg.label_smoothing,
                           positive_rate=y[rows].mean(axis=0)))
    # tf.data over in-memory arrays: 1.5x faster per epoch than fit's NumPy adapter on the
    # 20,000 TF-IDF columns (3.7 s against 5.5 s for 20 epochs of 835 movies, 2 cores);
    # jit_compile was slower on CPU (8.0 s).
    data = shuffled_batches(as_tensors(x), y, rows, batch_size, seed)
    if train_cfg.steps_per_epoch:  # a capped epoch (smoke runs) draws from an endless stream
        data = data.repeat()
    trainable.fit(data, epochs=train_cfg.epochs, shuffle=False,
                  steps_per_epoch=train_cfg.steps_per_epoch, verbose=0)
    return head


def logits(head, x: dict, batch_size: int = 1024) -> np.ndarray:
    """(n, genres) float64 logits of ``head`` on features ``x`` {feature: (n, dim)}, batch by
    batch as ``predict`` ran it (``inference_function``: no retracing warning per fold)."""
    step = inference_function(head)
    n = len(next(iter(x.values())))
    return np.concatenate([np.asarray(step({f: a[i:i + batch_size] for f, a in x.items()}))
                           for i in range(0, n, batch_size)]).astype(np.float64)


def out_of_fold(x: dict, y, params, train_cfg, batch_size, folds, seed=0):
    """((n, genres) out-of-fold logits, their mAP over the genres with train positives)."""
    x = as_tensors(x)

    def fit_predict(fold, fit_rows, held_out):
        head = train_head(x, y, params, train_cfg, batch_size, seed + fold, rows=fit_rows)
        return logits(head, {f: tf.gather(a, held_out) for f, a in x.items()})

    oof = cross_validation.out_of_fold(y, folds, seed, fit_predict)
    return oof, mean_average_precision(y, oof)


def fit_encoder_head(model, params: dict, prepared, cfg, log=print):
    """Trains ``model``'s head on ``prepared``'s train split and sets its weights.

    Args:
        model: an "encoder_head" model (``mmgenre.models.encoder_head``), or the
            ``training.fit.HeadFirst`` standing in for it until the fit is done.
        params: its hyperparameters with defaults filled in.
        prepared: mmgenre.data.prepare.PreparedData.
        cfg: the experiment (train.learning_rate / epochs / loss, data.batch_size, seed).

    Returns:
        (probabilities {split: (n, genres)} for dev and test from the cached features,
        calibrated out-of-fold train probabilities, extra facts for metrics.json).
    """
    started = time.time()
    features, folds, seed = list(params["features"]), int(params["folds"]), cfg.train.seed
    precision = params.get("precision", "float32")
    x = split_blocks(model, features, prepared, precision)
    y = prepared.splits["train"][1]
    log(f"features: {sum(a.shape[1] for a in x['train'].values())} per movie "
        f"({' + '.join(features)}, {precision}), {time.time() - started:.1f} s")
    train = as_tensors(x.pop("train"))
    oof, cv_map = out_of_fold(train, y, params, cfg.train, cfg.data.batch_size, folds, seed)
    log(f"{folds}-fold train mAP {cv_map:.4f} ({time.time() - started:.1f} s)")
    head = train_head(train, y, params, cfg.train, cfg.data.batch_size, seed)
    model.get_layer("head").set_weights(head.get_weights())
    scale, offset = calibrate(model, oof, y, params["calibration"])
    probs = {s: sigmoid(scale * logits(head, blocks) + offset).astype("float32")
             for s, blocks in x.items() if s != "train"}
    log(f"head trained in {time.time() - started:.1f} s")
    extra = {"cv_train_mAP": cv_map, "folds": folds, "calibration": params["calibration"],
             "head_seconds": round(time.time() - started, 1)}
    return probs, sigmoid(scale * oof + offset).astype("float32"), extra
