"""Raw serving inputs to model inputs, and probabilities to decisions, inside exported graphs.

Shared by the SavedModel export (``export``) and the int8 bundle (``int8_bundle``): posters
are decoded, resized and scaled by the functions training used (``pipeline.decode_poster``,
``to_unit_range``), and decisions use the run's fitted thresholds.
"""

from __future__ import annotations

import tensorflow as tf

from mmgenre import tasks
from mmgenre.data import pipeline


def poster_pixels(run):
    """fn: (batch,) encoded poster bytes -> (batch, h, w, 3) float32 in [0, 1], decoded and
    resized as in training. A model reading two inputs takes either alone: an empty string
    gets the absent signal (a black poster), as in evaluate."""
    size = tuple(run.config.data.image_size)
    fused = len(run.modalities) > 1

    def decode(data):
        if not fused:
            return pipeline.decode_poster(data, size)
        return tf.cond(tf.strings.length(data) > 0, lambda: pipeline.decode_poster(data, size),
                       lambda: tf.zeros((*size, 3), tf.uint8))

    return lambda posters: pipeline.to_unit_range(
        tf.map_fn(decode, posters, fn_output_signature=tf.TensorSpec((*size, 3), tf.uint8)))


def decide(run):
    """fn: (batch, genres) probabilities -> {"probabilities", "predicted"}: at the run's fitted
    thresholds, or the top genre for a single-label run."""
    n = len(run.vocab.genres)
    thresholds = tf.constant(run.threshold_values, tf.float32)
    single = not tasks.get(run.config.data.task).uses_thresholds

    def decisions(probabilities):
        if single:
            predicted = tf.one_hot(tf.argmax(probabilities, axis=-1), n) > 0
        else:
            predicted = probabilities >= thresholds
        return {"probabilities": probabilities, "predicted": predicted}
    return decisions
