"""The linear probe: frozen feature backbones, one logistic regression, calibrated outputs.

One Keras graph from raw inputs to calibrated genre probabilities:

    overview strings ─┬─> TF-IDF (TextVectorization) ───> L2 ─┐
                      └─> MPNet / MiniLM (tokenize, pool) ─> L2 ─┼─> concat ─> Dense "logits"
    poster (h, w, 3) ───> EfficientNet-Lite0 (+ pooling) ──> L2 ─┘        ─> Platt "genres"

Every backbone is frozen; the head is a one-vs-rest logistic regression over
the concatenated L2-normalised features (fusion inside one model when the
features read both inputs). It is not trained by gradient descent: the trainer
solves it on cached features with scikit-learn's L-BFGS logistic regression
(``mmgenre.training.solve``) and copies the solution into the Dense layer, so
the Keras model reaches scikit-learn's optimum exactly. Each genre's logit then
goes through Platt scaling fitted on out-of-fold train logits, so the outputs
are probabilities (the balanced class weights of the regression alone push
rare genres' scores up).
"""

from __future__ import annotations

import keras

from mmgenre import tasks
from mmgenre.encoders.int8 import check_precision
from mmgenre.models.backbones import image_encoder_backbone, text_encoder_backbone, tfidf_backbone
from mmgenre.models.layers import PlattCalibration
from mmgenre.models.registry import register

TFIDF = "tfidf"
CALIBRATIONS = ("platt", "none")
DEFAULT_FEATURES = (TFIDF, "minilm", "efficientnet_lite0")


def feature_kind(feature: str) -> str:
    """"text" or "image": the input a feature backbone reads."""
    from mmgenre.encoders.sources import KNOWN

    if feature == TFIDF:
        return "text"
    if feature in KNOWN:
        return KNOWN[feature].kind
    raise ValueError(f"linear_probe features must be {TFIDF!r} or a known encoder "
                     f"({sorted(KNOWN)}; `mmgenre encoders list`), got {feature!r}")


def probe_modalities(params: dict) -> tuple:
    """The inputs a probe reads, from its ``features`` (poster first, as everywhere)."""
    features = params.get("features", DEFAULT_FEATURES)
    if isinstance(features, str) or not features:
        raise ValueError(f"linear_probe features must be a non-empty list, got {features!r}")
    kinds = {feature_kind(f) for f in features}
    return tuple(m for m, k in (("poster", "image"), ("overview", "text")) if k in kinds)


def branch_features(feature, inputs, tfidf_max_tokens):
    """(batch, dim) L2-normalised features of ``feature`` (layer "<feature>_l2") from the
    symbolic ``inputs`` {"overview": strings, "poster": pixels}."""
    if feature == TFIDF:
        return tfidf_backbone(inputs["overview"], tfidf_max_tokens)
    if feature_kind(feature) == "text":
        pooled = text_encoder_backbone(inputs["overview"], feature, prefix=f"{feature}_")
    else:
        pooled, _ = image_encoder_backbone(inputs["poster"], feature, prefix=f"{feature}_")
    return keras.layers.UnitNormalization(name=f"{feature}_l2")(pooled)


def check_probe_args(task, features, calibration, folds, precision="float32") -> list:
    """Raises ValueError on arguments shared by the cached-feature families; returns the
    features as a list."""
    check_precision(precision)
    if not isinstance(tasks.get(task), tasks.MultiLabel):
        raise ValueError(f"a cached-feature model is multi-label (one logistic output per "
                         f"genre); data.task {task!r} needs another model")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {calibration!r}")
    if not 2 <= int(folds) <= 20:
        raise ValueError(f"folds must be in [2, 20], got {folds}")
    features = list(features)
    if len(set(features)) != len(features):
        raise ValueError(f"features repeat a name: {features}")
    probe_modalities({"features": features})
    return features


def feature_inputs(features, image_size) -> dict:
    """The symbolic raw inputs the features read: "poster" (batch, h, w, 3), "overview" (batch,)."""
    modalities = probe_modalities({"features": features})
    inputs = {}
    if "poster" in modalities:
        inputs["poster"] = keras.Input(shape=(*image_size, 3), name="poster")
    if "overview" in modalities:
        inputs["overview"] = keras.Input(shape=(), dtype="string", name="overview")
    return inputs


@register("linear_probe", modalities=probe_modalities, fitted_by="linear_solver",
          description="frozen encoders / TF-IDF + one logistic regression + Platt calibration")
def build_linear_probe(num_genres: int, task: str = "multilabel", image_size=(224, 224),
                       features=DEFAULT_FEATURES, tfidf_max_tokens: int = 20000, c=None,
                       folds: int = 5, calibration: str = "platt", precision: str = "float32"):
    """Builds feature backbones + concatenation + Dense "logits" + calibration "genres".

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" only (one logistic regression per genre).
        image_size: (height, width) of the poster input; must be the image
            encoder's own size (224 for EfficientNet-Lite0), which its cached
            embeddings use.
        features: list of str. "tfidf" and/or known encoders, e.g.
            ["tfidf", "minilm", "efficientnet_lite0"]. Defaults to those three.
        tfidf_max_tokens: int. TF-IDF vocabulary size (uni- and bigrams).
            Defaults to 20000.
        c: float. inverse L2 strength of the regression; None chooses it from
            ``mmgenre.training.solve.C_GRID`` on ``folds``-fold cross-validated
            train mAP. Defaults to None.
        folds: int. cross-validation folds on the train split (C and the
            calibration's out-of-fold logits). Defaults to 5.
        calibration: str. "platt" (per-genre scale and offset on out-of-fold
            logits) or "none" (plain sigmoid). Defaults to "platt".
        precision: str. "float32", or "int8": the head is fitted on, and the run served
            with, the encoders' int8 LiteRT graphs (``mmgenre.models.quantized``); the saved
            graph keeps the float encoders. Defaults to "float32".

    Returns:
        keras.Model: {"overview": (batch,) strings and/or "poster": (batch, h, w, 3)
        in [0, 1]} -> (batch, num_genres) probabilities. Its head is unfitted
        until ``mmgenre.training.solve.fit_linear_probe`` solves it.
    """
    if c is not None and not c > 0:
        raise ValueError(f"c must be > 0 or null (chosen by cross-validation), got {c}")
    features = check_probe_args(task, features, calibration, folds, precision)
    inputs = feature_inputs(features, image_size)
    branches = [branch_features(f, inputs, tfidf_max_tokens) for f in features]
    x = (keras.layers.Concatenate(name="features")(branches) if len(branches) > 1
         else keras.layers.Identity(name="features")(branches[0]))
    logits = keras.layers.Dense(num_genres, dtype="float32", name="logits")(x)
    genres = PlattCalibration(num_genres, name="genres")(logits)
    return keras.Model(inputs, genres, name="linear_probe")
