"""Train only the head of a frozen-backbone model on features computed once.

Every gradient-trained family is a backbone and the shared head model
(``mmgenre.models.heads``): ResNet50 with its preprocessing, an encoder, a
TF-Hub model, then layer "head". When the backbone is frozen, its output for a
poster never changes, so it is computed once per (dataset, split, image size,
model settings) and cached on disk as .npy; later epochs, reruns, fusion
experiments and searches fit only the head from there. The head is a layer of
the full model, so fitting it trains the full model: the saved best.keras still
takes posters.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import tensorflow as tf

from mmgenre import runs
from mmgenre.models.heads import backbone_and_head
from mmgenre.models.weights import resolve_source
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


def cached_features(extractor, dataset, path: str):
    """Features of every element of ``dataset`` (unshuffled, unaugmented), from ``path``
    if it loads, else computed with a progress bar and saved there (``runs.cached_array``).

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

    array = runs.cached_array(path, compute)
    if widths is None:
        return array
    return dict(zip(widths, np.split(array, np.cumsum(list(widths.values()))[:-1], axis=1)))


def feature_dataset(features, targets, batch_size, training=False, seed=0):
    """Batches of (features, targets); ``features`` is an array or a dict of them."""
    ds = tf.data.Dataset.from_tensor_slices((features, targets))
    if training:
        ds = ds.shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
