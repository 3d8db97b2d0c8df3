"""The one head every gradient-trained family ends in, and the backbone / head split.

A family's builder computes its backbone's features from the raw inputs and
hands them to ``classifier``, which puts the shared head behind them as its own
functional model (layer "head"), keras-hub's Backbone / Task split:

    inputs -> backbone layers -> "features" (batch, dim) -> "head": [Dense "embedding"] -> Dropout -> "genres"

So caching a frozen backbone is running ``backbone_and_head(model)[0]`` once,
training on the cache is fitting the head model itself, and a fusion takes a
branch's backbone and its head's "embedding" (``embedding_layer``). Losses and metrics come from the task
(``mmgenre.tasks``: sigmoid per genre for multilabel, softmax for single).
"""

from __future__ import annotations

import keras

from mmgenre import tasks
from mmgenre.config import LOSSES


def check_rates(**rates):
    """Raises ValueError naming the first dropout-like rate outside [0, 1) (builders' argument check)."""
    for key, value in rates.items():
        if not 0 <= value < 1:
            raise ValueError(f"{key} must be in [0, 1), got {value}")


def genre_head(features, num_genres: int, task: str = "multilabel"):
    """(batch, dim) features -> (batch, num_genres) probabilities, layer "genres".

    The head runs in float32 even under a mixed-precision policy, so
    probabilities near 0 and 1 keep their precision.
    """
    if num_genres < 1:
        raise ValueError(f"num_genres must be >= 1, got {num_genres}")
    return keras.layers.Dense(num_genres, activation=tasks.get(task).activation, dtype="float32",
                              name="genres")(features)


HEAD, FEATURES = "head", "features"


def dense_head(dim: int, num_genres: int, task: str = "multilabel", units: int | None = None,
               dropout: float = 0.0, l2: float = 0.0, name: str = HEAD):
    """The shared head as its own model: (batch, dim) features -> (batch, num_genres) probabilities.

    Args:
        dim: int. width of the backbone's features.
        units: int. width of the ReLU Dense "embedding" (the features a fusion reuses); None
            when the backbone's output already is the embedding (the study's LSTM).
        dropout: float. dropout before "genres".
        l2: float. L2 penalty on the embedding's kernel (0: none).
    """
    check_rates(dropout=dropout)
    features = keras.Input(shape=(dim,), name=FEATURES)
    x = features
    if units is not None:
        x = keras.layers.Dense(units, activation="relu", name="embedding",
                               kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(features, genre_head(x, num_genres, task), name=name)


def classifier(inputs: dict, features, num_genres: int, task: str = "multilabel",
               units: int | None = None, dropout: float = 0.0, l2: float = 0.0,
               name: str = "classifier"):
    """Backbone features + ``dense_head`` -> keras.Model {modality: input} -> (batch, num_genres).

    Args:
        inputs: dict of keras.Input keyed by modality.
        features: (batch, dim) output of the family's backbone on ``inputs``.
        units, dropout, l2: the head's, see ``dense_head``.
    """
    head = dense_head(int(features.shape[-1]), num_genres, task, units, dropout, l2)
    # A named boundary: the backbone's output, where a frozen backbone's features are cached.
    features = keras.layers.Identity(name=FEATURES)(features)
    return keras.Model(inputs, head(features), name=name)


def backbone_and_head(model):
    """(backbone, head) of a model whose trained part is its head model, sharing its layers.

    The head's inputs are named as the boundary layers of ``model`` that feed them (Identity,
    or a fusion's Presence flags): "features" in a ``classifier``; a fusion's head reads
    several ("poster_features", "poster_present", ...).

    backbone: the model's inputs -> (batch, dim) features, or a dict of them by head input.
    head: layer "head", features -> (batch, num_genres); fitting it trains ``model``.

    Raises:
        ValueError when ``model`` has no head model (run folders saved before the head was its
        own model: retrain them to cache their features).
    """
    from mmgenre.models.layers import Presence

    layers = {layer.name: layer for layer in model.layers}
    head = layers.get(HEAD)
    fed_by = [layer.name for layer in getattr(head, "layers", [])
              if isinstance(layer, keras.layers.InputLayer)]
    # Only boundary layers: an encoder head's inputs are named by feature ("tfidf"), and its
    # TF-IDF vectorizer is a layer "tfidf" whose output is not what the head reads.
    if not fed_by or not all(isinstance(layers.get(name), (keras.layers.Identity, Presence))
                             for name in fed_by):
        raise ValueError(f"model {model.name!r} has no head model fed by its backbone's boundary "
                         f"layers (layer {HEAD!r} behind {FEATURES!r}, as heads.classifier and "
                         "fusion build) to train on cached backbone features")
    features = {name: layers[name].output for name in fed_by}
    features = features[fed_by[0]] if len(fed_by) == 1 else features
    return keras.Model(model.inputs, features, name=f"{model.name}_backbone"), head


def embedding_layer(head):
    """The head's Dense "embedding", what a fusion puts after a branch's backbone; None where
    the backbone's output already is the embedding (the study's LSTM)."""
    return next((layer for layer in head.layers if layer.name == "embedding"), None)


def loss_for(task: str, loss: str = "crossentropy", label_smoothing: float = 0.0,
             positive_rate=None):
    """The task's loss of kind ``loss`` (``mmgenre.tasks``); "balanced" needs ``positive_rate``,
    each genre's train frequency (n_genres,)."""
    if loss not in LOSSES:
        raise ValueError(f"train.loss must be one of {list(LOSSES)}, got {loss!r}")
    return tasks.get(task).loss(loss, label_smoothing, positive_rate)


def metrics_for(task: str, num_genres: int):
    """Training-time metrics of the task (the headline F1/mAP are computed after training)."""
    return tasks.get(task).metrics(num_genres)
