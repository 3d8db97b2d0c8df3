"""Poster embeddings from a keras-hub image backbone (EfficientNet-Lite0 by default), frozen.

The backbone's feature map is averaged over space (the pooled 1,280-d features
of EfficientNet-Lite0). Inputs are scaled the way the checkpoint was trained:
``(x - 127) / 128`` on 0-255 pixels for EfficientNet-Lite0, recorded in the
prepared folder's config.json.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mmgenre.encoders.sources import EncoderError, resolve
from mmgenre.progress import progress


def encoder_settings(preset: str) -> dict:
    """{"input_scale": [offset, divisor] on 0-255 pixels, "image_size", "batch_norm_epsilon"}."""
    settings = {"input_scale": [127.5, 127.5], "image_size": 224}
    path = os.path.join(preset, "config.json")
    if os.path.isdir(preset) and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            settings.update(json.load(f).get("mmgenre", {}))
    return settings


def load_image_encoder(name: str):
    """(backbone, settings) for an image encoder name, folder or keras-hub preset."""
    import keras_hub

    preset = resolve(name, "image")
    settings = encoder_settings(preset)
    extra = {"batch_norm_epsilon": settings["batch_norm_epsilon"]} if "batch_norm_epsilon" in settings else {}
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, **extra)
    except (OSError, ValueError, KeyError) as err:
        raise EncoderError(f"cannot load image encoder {name!r} from {preset}: {err}") from None
    return backbone, settings


def embed_posters(name: str, paths, batch_size: int = 32, show_progress: bool = True) -> np.ndarray:
    """(n, features) float32 spatially averaged backbone features of poster files ``paths``."""
    import tensorflow as tf

    from mmgenre.data.pipeline import read_poster
    from mmgenre.encoders.cache import loaded_encoder

    # One traced function for full and last (smaller) batches alike, and for every call.
    (backbone, settings), forward = loaded_encoder(
        name, "image", lambda b: lambda x: tf.reduce_mean(b(x, training=False), axis=(1, 2)))
    size = int(settings["image_size"])
    offset, divisor = settings["input_scale"]
    ds = (tf.data.Dataset.from_tensor_slices(list(paths))
          .map(lambda p: (tf.cast(read_poster(p, (size, size)), tf.float32) - offset) / divisor,
               num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    steps = -(-len(paths) // batch_size)
    batches = progress(ds, steps, f"embedding {len(paths)} posters") if show_progress else ds
    return np.concatenate([forward(x).numpy() for x in batches]).astype(np.float32)
