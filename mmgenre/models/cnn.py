"""The original study's poster CNN: two Conv2D+ReLU+MaxPooling blocks, Flatten
(the backbone), then the shared head: Dense, Dropout, genres."""

from __future__ import annotations

import keras

from mmgenre.models.heads import classifier
from mmgenre.models.registry import register


@register("cnn", modalities=("poster",), description="study's 2-block poster CNN")
def build_cnn(num_genres: int, task: str = "multilabel", image_size=(128, 128),
              filters=(32, 64), dense_units: int = 128, dropout: float = 0.5):
    """Builds the study's poster CNN.

    Args:
        num_genres: int. number of genres (output units).
        task: str. "multilabel" (sigmoid) or "single" (softmax).
        image_size: (height, width). poster size. Defaults to (128, 128).
        filters: list of int. filters per Conv2D block. Defaults to (32, 64).
        dense_units: int. width of the "embedding" Dense layer. Defaults to 128.
        dropout: float. dropout after the embedding. Defaults to 0.5.

    Returns:
        keras.Model: {"poster": (batch, height, width, 3) in [0, 1]} ->
        (batch, num_genres) probabilities.
    """
    if not filters:
        raise ValueError(f"filters must list at least one block, got {filters!r}")
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    x = poster
    for i, n in enumerate(filters, start=1):
        x = keras.layers.Conv2D(n, 3, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return classifier({"poster": poster}, x, num_genres, task, dense_units, dropout, name="cnn")
