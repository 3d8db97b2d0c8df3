"""Train only the head of a frozen-backbone model on features computed once.

Every gradient-trained family is a backbone and the shared head model
(``mmgenre.models.heads``): ResNet50 with its preprocessing, an encoder, a
TF-Hub model, then layer "head". When the backbone is frozen, its output for a
poster never changes, so it is computed once per (dataset, split, input
settings, backbone architecture and weights) and cached on disk as .npy (with
its SHA-256, checked before use); later epochs, reruns, other heads and searches
over head hyperparameters fit only the head from there. The head is a layer of
the full model, so fitting it trains the full model: the saved best.keras still
takes posters.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from mmgenre import files
from mmgenre.models.heads import backbone_and_head
from mmgenre.progress import timed


def frozen_backbone(model):
    """(backbone, head) of ``model`` (``heads.backbone_and_head``) when its backbone is frozen.

    Raises:
        ValueError when the model has no separate head, or its backbone trains a layer
        (its features change every step: nothing to cache).
    """
    backbone, head = backbone_and_head(model)
    trainable = [layer.name for layer in backbone.layers if layer.trainable_weights]
    if trainable:
        raise ValueError(f"train.cache_features needs a frozen backbone, but model {model.name!r} "
                         f"trains {trainable[:5]}; freeze it (e.g. trainable_blocks: 0) or turn "
                         "caching off")
    return backbone, head


def backbone_identity(backbone) -> str:
    """SHA-256 of a backbone's architecture (its layers' configs) and of every weight value.

    In the cache key instead of the model's name and params: models that share a backbone
    (a search over head hyperparameters, a concat and a GMU fusion of the same branches)
    share its features, and a backbone that differs in any weight (a retrained init_from or
    branch run, another checkpoint prepared under an encoder's name) never reads them.
    About 1 s for a 110M-parameter encoder on 2 cores.
    """
    digest = hashlib.sha256(json.dumps([keras.saving.serialize_keras_object(layer)
                                        for layer in backbone.layers],
                                       sort_keys=True, default=str).encode())
    for weight in backbone.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_features(extractor, dataset, path: str):
    """Features of every element of ``dataset`` (unshuffled, unaugmented), from ``path``
    if it loads, else computed with a progress bar and saved there (``files.cached_array``).

    Returns (n, dim), or a dict of (n, dim_k) arrays for a backbone with several outputs
    (a fusion's), stored side by side in one array.
    """
    outputs = extractor.output
    widths = ({name: int(t.shape[-1]) for name, t in outputs.items()}
              if isinstance(outputs, dict) else None)

    def compute():
        print(f"caching backbone features -> {path}")
        with timed(f"backbone features ({extractor.name})"):
            out = extractor.predict(dataset, verbose=2 if not sys.stdout.isatty() else 1)
        return np.concatenate([out[name] for name in widths], axis=1) if widths else out

    if os.path.exists(path):  # checked against its SHA-256 before use (files.cached_array)
        print(f"backbone features from the cache: {path}")
    array = files.cached_array(path, compute)
    if widths is None:
        return array
    return dict(zip(widths, np.split(array, np.cumsum(list(widths.values()))[:-1], axis=1)))


def feature_dataset(features, targets, batch_size, training=False, seed=0):
    """Batches of (features, targets); ``features`` is an array or a dict of them."""
    ds = tf.data.Dataset.from_tensor_slices((features, targets))
    if training:
        ds = ds.shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
