"""Checks that a graph over frozen encoders reproduces the scores of the cached features it was fitted on.

A head fitted on cached embeddings is right only when the saved graph computes
the same features from raw inputs: the poster size must be the encoder's own,
and the first dev rows run through the whole graph must match.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmgenre.models.predict_step import batch_predictor
from mmgenre.models.probe import TFIDF, feature_kind

GRAPH_CHECK_ROWS = 8  # dev rows run through the whole graph to check the cached features
GRAPH_CHECK_TOLERANCE = 1e-4


class FeatureMismatch(ValueError):
    """The saved graph and the cached features disagree: the model would not reproduce its scores."""


def check_image_size(features, image_size):
    """Raises FeatureMismatch when ``image_size`` (data.image_size, the poster input) is not
    each image encoder's own size (its cached embeddings use that size), before anything is
    built or computed."""
    from mmgenre.encoders.loading import encoder_settings
    from mmgenre.encoders.sources import resolve

    for feature in features:
        if feature != TFIDF and feature_kind(feature) == "image":
            size = int(encoder_settings(resolve(feature, "image"))["image_size"])
            given = tuple(image_size)
            if given != (size, size):
                raise FeatureMismatch(f"{feature} embeds posters at {size}x{size}; set "
                                      f"data.image_size: [{size}, {size}] (got {list(given)})")


def check_graph(model, data_cfg, prepared, cached_probs, rows: int = GRAPH_CHECK_ROWS):
    """Runs the first dev rows through the whole graph (raw inputs; a Keras model or an
    ``Int8Pipeline``) and raises FeatureMismatch when its probabilities differ from those
    of the cached features."""
    from mmgenre.data.prepare import make_split_dataset

    dev_rows, dev_y = prepared.splits["dev"]
    if dev_rows.empty:
        return 0.0
    n = min(rows, len(dev_rows))
    # The first n dev rows as their own uncached batch: taking n rows of the cached split left
    # its cache half read (TensorFlow logged a warning about it), and a disk cache must never
    # hold part of a split.
    first = dataclasses.replace(prepared, splits={
        **prepared.splits, "dev": (dev_rows.iloc[:n].reset_index(drop=True), dev_y[:n])})
    ds = make_split_dataset(dataclasses.replace(data_cfg, cache="none", batch_size=n), first, "dev",
                            raw_text=True)
    probs = batch_predictor(model, ds.element_spec[0])(ds.get_single_element()[0])
    diff = float(np.max(np.abs(np.asarray(probs) - cached_probs[:n])))
    if not diff <= GRAPH_CHECK_TOLERANCE:
        raise FeatureMismatch(
            f"the saved graph's probabilities differ from the cached features' by {diff:.2e} on "
            f"{n} dev movies (tolerance {GRAPH_CHECK_TOLERANCE}): an encoder cache is stale or "
            "data.image_size is not the encoder's own size")
    return diff
