"""tf.data input pipelines for posters, overviews and pairs.

Each step is a small named op so it can be tested eagerly and inside tf.data:

    path -> read_poster -> (cache, uint8 at the model's size) -> shuffle
         -> augment_poster (train only) -> to_unit_range -> batch -> prefetch
    text -> batch -> vectorizer (TextVectorization adapted on train only)

Elements are ``({"poster": (batch, height, width, 3) float32 in [0, 1],
"overview": (batch, sequence_length) int64}, (batch, n_genres) float32)``
holding only the modalities the model takes. Posters are cached as uint8 after
resizing (4x smaller than float32), so a cached epoch skips file reads, JPEG
decoding and resizing.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def read_poster(path, image_size):
    """File path -> (height, width, 3) uint8, whatever the format or channels."""
    return decode_poster(tf.io.read_file(path), image_size)


def decode_poster(data, image_size):
    """Encoded image bytes -> (height, width, 3) uint8: the one decode of training, evaluation
    and exported models.

    decode_image reads JPEG/PNG/GIF/BMP by content (a PNG named .jpg works),
    converts grayscale, palette, RGBA and CMYK to RGB (channels=3), and keeps
    only the first frame of a GIF (expand_animations=False).
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def read_poster_or_blank(path, image_size):
    """Like read_poster, but an empty path (a movie without a usable poster)
    gives an all-zero image, the "absent" signal fused models recognise."""
    return tf.cond(tf.strings.length(path) > 0, lambda: read_poster(path, image_size),
                   lambda: tf.zeros((*image_size, 3), tf.uint8))


def to_unit_range(image):
    """uint8 [0, 255] -> float32 [0, 1], the range every mmgenre image model expects."""
    return tf.cast(image, tf.float32) / 255.0


def augment_poster(image):
    """Train-only augmentation on a float32 [0, 1] image: flip, crop, colour jitter."""
    size = tf.shape(image)[:2]
    image = tf.image.random_flip_left_right(image)
    # Zoom by up to 12% then crop back: posters are framed loosely, so small
    # shifts and scale changes keep the genre cues.
    scale = tf.random.uniform([], 1.0, 1.12)
    bigger = tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
    image = tf.image.resize(image, bigger)
    image = tf.image.random_crop(image, tf.concat([size, [3]], 0))
    image = tf.image.random_brightness(image, 0.1)
    image = tf.image.random_contrast(image, 0.85, 1.15)
    image = tf.image.random_saturation(image, 0.85, 1.15)
    return tf.clip_by_value(image, 0.0, 1.0)


def build_vectorizer(train_texts, max_tokens: int = 10000, sequence_length: int = 200,
                     vocabulary=None):
    """TextVectorization adapted on ``train_texts`` only (or given a saved vocabulary).

    Returns a layer mapping (batch,) strings -> (batch, sequence_length) int64,
    0 for padding and 1 for out-of-vocabulary words.
    """
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length,
        output_mode="int", name="overview_vectorizer",
    )
    if vocabulary is not None:
        layer.set_vocabulary(vocabulary)
    else:
        layer.adapt(tf.data.Dataset.from_tensor_slices(list(train_texts)).batch(256))
    return layer


def save_vectorizer(layer, path: str):
    from mmgenre.files import write_json

    config = layer.get_config()
    write_json(path, {"max_tokens": config["max_tokens"],
                      "sequence_length": config["output_sequence_length"],
                      # [0] is padding and [1] the OOV token; set_vocabulary adds them back.
                      "vocabulary": layer.get_vocabulary()[2:]})


def load_vectorizer(path: str):
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return build_vectorizer(None, saved["max_tokens"], saved["sequence_length"],
                            vocabulary=saved["vocabulary"])


def _inputs(table, modalities, allow_missing):
    columns = {}
    for modality in modalities:
        values = table[modality].tolist()
        if allow_missing:
            # "" is an absent poster (zero image) or overview (all padding).
            values = [v if isinstance(v, str) else "" for v in values]
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"rows without a usable {modality} reached the pipeline; "
                             "select rows with mmgenre.data.validate.select_modalities first")
        columns[modality] = values
    return columns


def make_dataset(table, targets: np.ndarray, modalities, image_size=(128, 128),
                 vectorizer=None, batch_size: int = 32, training: bool = False,
                 cache: str = "memory", augment: bool = False, seed: int = 0,
                 allow_missing: bool = False, raw_text: bool = False):
    """Builds the batched tf.data pipeline for one split.

    Args:
        table: validated movie rows (every row has the modalities asked for).
        targets: (n_movies, n_genres) float32 targets aligned with ``table``.
        modalities: the model's inputs, a subset of ("poster", "overview").
        image_size: (height, width) posters are resized to.
        vectorizer: adapted TextVectorization (required for "overview").
        batch_size: examples per batch.
        training: shuffle each epoch and (with ``augment``) augment posters.
        cache: "memory", "none", or a file prefix for a disk cache.
        augment: apply ``augment_poster`` (only when ``training``).
        seed: shuffle seed.
        allow_missing: rows may lack a modality (models that handle absent
            inputs); the missing poster becomes zeros, the overview padding.
        raw_text: keep overviews as (batch,) strings, for models whose
            overview input is a string (TF-Hub text encoders).
    """
    if len(table) != len(targets):
        raise ValueError(f"{len(table)} rows but {len(targets)} targets")
    if "overview" in modalities and vectorizer is None and not raw_text:
        raise ValueError("an overview pipeline needs a vectorizer adapted on train")
    ds = tf.data.Dataset.from_tensor_slices((_inputs(table, modalities, allow_missing), targets))
    if "poster" in modalities:
        size = tuple(image_size)
        read = read_poster_or_blank if allow_missing else read_poster
        ds = ds.map(lambda x, y: ({**x, "poster": read(x["poster"], size)}, y),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache == "memory":
        ds = ds.cache()
    elif cache and cache != "none":
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        ds = ds.cache(cache)
    if training:
        ds = ds.shuffle(min(len(table), 10000), seed=seed, reshuffle_each_iteration=True)
    if "poster" in modalities:
        augment_now = training and augment

        def finish_poster(x, y):
            image = to_unit_range(x["poster"])
            return {**x, "poster": augment_poster(image) if augment_now else image}, y

        ds = ds.map(finish_poster, num_parallel_calls=AUTOTUNE, deterministic=not training)
    ds = ds.batch(batch_size)
    if "overview" in modalities and not raw_text:
        ds = ds.map(lambda x, y: ({**x, "overview": vectorizer(x["overview"])}, y),
                    num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
