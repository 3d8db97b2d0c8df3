"""Train only the head of a frozen-backbone model on features computed once.

Every mmgenre model has a layer named "embedding"; everything before it is the
backbone (ResNet50 with its preprocessing, a TF-Hub encoder). When all of it is
frozen, its output for a poster never changes, so it is computed once per
(dataset, split, image size, model settings) and cached on disk as .npy; later
epochs, reruns, fusion experiments and searches train only the head from there.
The head shares its layers with the full model, so training the head trains the
full model: the saved best.keras still takes posters.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from mmgenre import runs
from mmgenre.models.weights import resolve_source


def split_at_embedding(model):
    """(extractor, head) sharing layers with ``model``.

    extractor: model inputs -> input of the "embedding" layer (batch, feature_dim).
    head: (batch, feature_dim) -> the model's output, through the same layer objects.

    Raises:
        ValueError when a layer before "embedding" is trainable (nothing to cache)
        or the layers after it are not a simple chain.
    """
    names = [layer.name for layer in model.layers]
    if "embedding" not in names:
        raise ValueError(f"model {model.name!r} has no 'embedding' layer to split at")
    cut = names.index("embedding")
    trainable = [layer.name for layer in model.layers[:cut] if layer.trainable_weights]
    if trainable:
        raise ValueError(f"train.cache_features needs a frozen backbone, but model {model.name!r} "
                         f"trains {trainable[:5]}; freeze it (e.g. trainable_blocks: 0) or turn "
                         "caching off")
    embedding = model.get_layer("embedding")
    extractor = keras.Model(model.inputs, embedding.input, name=f"{model.name}_features")
    features = keras.Input(shape=tuple(embedding.input.shape[1:]), name="features")
    x = features
    for layer in model.layers[cut:]:
        x = layer(x)
    if x.shape != model.outputs[0].shape:
        raise ValueError(f"layers after 'embedding' in {model.name!r} are not a simple chain")
    return extractor, keras.Model(features, x, name=f"{model.name}_head")


def weights_identity(source):
    """What identifies pretrained weights copied into the backbone (None: the model's own):
    the file's path, size and modification time, so retraining the source invalidates the cache."""
    if not source:
        return None
    path = resolve_source(source)
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def encoder_identity(params: dict):
    """The prepared package behind a pretrained encoder named in ``params`` (None without one),
    so preparing another checkpoint under the same name invalidates the cache."""
    if not isinstance(params.get("encoder"), str):
        return None
    from mmgenre.encoders.cache import encoder_identity as identity

    return identity(params["encoder"])


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_features(extractor, dataset, path: str) -> np.ndarray:
    """Features of every element of ``dataset`` (unshuffled, unaugmented), from ``path``
    if it loads, else computed with a progress bar and saved there (``runs.cached_array``)."""

    def compute():
        print(f"caching backbone features -> {path}")
        return extractor.predict(dataset, verbose=2 if not sys.stdout.isatty() else 1)

    return runs.cached_array(path, compute)


def feature_dataset(features, targets, batch_size, training=False, seed=0):
    ds = tf.data.Dataset.from_tensor_slices((features, targets))
    if training:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
