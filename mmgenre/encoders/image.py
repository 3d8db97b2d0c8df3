"""Poster embeddings from a keras-hub image backbone (EfficientNet-Lite0 by default), frozen.

The backbone's feature map is averaged over space (the pooled 1,280-d features
of EfficientNet-Lite0). Inputs are scaled the way the checkpoint was trained:
``(x - 127) / 128`` on 0-255 pixels for EfficientNet-Lite0, recorded in the
prepared folder's config.json.
"""

from __future__ import annotations

import numpy as np

from mmgenre.encoders.int8 import check_precision, int8_encoder
from mmgenre.encoders.loading import loaded_encoder
from mmgenre.progress import progress


def image_embedder(name: str, precision: str = "float32"):
    """(embed, settings) of image encoder ``name``, loaded once per process: ``embed(pixels)``
    ((batch, size, size, 3) float32 in the checkpoint's input scale) -> (batch, channels)
    float32 features averaged over space, by the float32 Keras graph or the int8 LiteRT one
    (``mmgenre.encoders.int8``); ``settings`` has "image_size" and "input_scale"."""
    import tensorflow as tf

    # Traced once for any batch size: a signature with the batch dimension left open, where
    # tracing the first batch's shape and then the last (smaller) one cost two traces of the
    # backbone (about 2 s each for EfficientNet-Lite0 on 2 cores).
    pixels = tf.TensorSpec([None, None, None, 3], tf.float32, name="pixels")
    (backbone, settings), forward = loaded_encoder(name, "image", lambda b: tf.function(
        lambda x: tf.reduce_mean(b(x, training=False), axis=(1, 2)), input_signature=[pixels]))
    if check_precision(precision) == "int8":
        return int8_encoder(name, "image"), settings
    return lambda pixels: forward(pixels).numpy(), settings


def embed_posters(name: str, paths, batch_size: int = 32, show_progress: bool = True,
                  precision: str = "float32") -> np.ndarray:
    """(n, features) float32 spatially averaged backbone features of poster files ``paths``
    at ``precision`` ("float32" or "int8")."""
    import tensorflow as tf

    from mmgenre.data.pipeline import read_poster, to_unit_range

    forward, settings = image_embedder(name, precision)
    size = int(settings["image_size"])
    offset, divisor = settings["input_scale"]
    if precision == "int8":
        # The served pipeline's arithmetic (to_unit_range, then the graph's Rescaling layer):
        # int8 activations are rounded, so the features trained on are computed as served.
        def scale(p):
            x = to_unit_range(read_poster(p, (size, size)))
            return x * tf.constant(255.0 / divisor, tf.float32) + tf.constant(-offset / divisor, tf.float32)
    else:
        def scale(p):
            return (tf.cast(read_poster(p, (size, size)), tf.float32) - offset) / divisor
    ds = (tf.data.Dataset.from_tensor_slices(list(paths))
          .map(scale, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    steps = -(-len(paths) // batch_size)
    batches = progress(ds, steps, f"embedding {len(paths)} posters") if show_progress else ds
    return np.concatenate([forward(x) for x in batches]).astype(np.float32)
