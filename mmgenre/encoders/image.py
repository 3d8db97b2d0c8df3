"""Poster embeddings from a keras-hub image backbone (EfficientNet-Lite0 by default), frozen.

The backbone's feature map is averaged over space (the pooled 1,280-d features
of EfficientNet-Lite0). Inputs are scaled the way the checkpoint was trained:
``(x - 127) / 128`` on 0-255 pixels for EfficientNet-Lite0, recorded in the
prepared folder's config.json.
"""

from __future__ import annotations

import numpy as np

from mmgenre.encoders.loading import loaded_encoder
from mmgenre.progress import progress


def embed_posters(name: str, paths, batch_size: int = 32, show_progress: bool = True) -> np.ndarray:
    """(n, features) float32 spatially averaged backbone features of poster files ``paths``."""
    import tensorflow as tf

    from mmgenre.data.pipeline import read_poster

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
