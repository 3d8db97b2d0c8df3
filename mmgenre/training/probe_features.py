"""A probe's feature blocks for a split, computed once: encoder embeddings from their cache, TF-IDF
from the model's own adapted layers.

Each block is what layer "<feature>_l2" of the saved graph computes, so a head
solved or trained on these arrays is the head of the whole graph
(``mmgenre.training.graph_check`` runs raw inputs through it to make sure).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from mmgenre.models.backbones import adapt_tfidf
from mmgenre.models.probe import TFIDF, feature_kind


def encoder_block(feature: str, rows, precision: str = "float32") -> np.ndarray:
    """(n, dim) L2-normalised embeddings of ``rows`` (their overviews or posters) by encoder
    ``feature`` at ``precision``, from the embedding cache (computed there when missing)."""
    from mmgenre.encoders.embedding_cache import cached_embeddings

    kind = feature_kind(feature)
    dense = cached_embeddings(feature, kind, rows["overview" if kind == "text" else "poster"],
                              precision=precision)
    return dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)


def feature_block(model, feature, rows, precision: str = "float32") -> np.ndarray:
    """(n, dim) float32 features of ``rows`` for one block: what layer "<feature>_l2" of
    ``model`` computes (behind int8 encoders at ``precision`` "int8"), from the embedding
    cache for an encoder."""
    if feature == TFIDF:
        # The graph's own layers called eagerly, 256 overviews at a time: a Model(...).predict
        # per split traced a new function each time, and TensorFlow warned of retracing in
        # every run (the features are the same to the bit).
        layers = [model.get_layer(name) for name in ("tfidf", "tfidf_weighting", "tfidf_l2")]
        # Written into one array: a list of blocks joined at the end held the large set's
        # 0.32 GB of train features twice.
        texts = [t if isinstance(t, str) else "" for t in rows["overview"]]
        block = np.zeros((len(texts), layers[1].units), np.float32)
        for start in range(0, len(texts), 256):
            x = tf.constant(texts[start:start + 256])
            for layer in layers:
                x = layer(x)
            block[start:start + 256] = x
        return block
    return encoder_block(feature, rows, precision).astype("float32")


def split_features(model, features, rows, precision: str = "float32"):
    """(n, dim) CSR matrix of the probe's concatenated features for ``rows``: what the
    "features" layer of ``model`` computes, from the caches where there is one."""
    return sp.hstack([sp.csr_matrix(feature_block(model, f, rows, precision))
                      for f in features]).tocsr()


def adapt_text_features(model, features, prepared):
    """Fits the model's TF-IDF (when it has one) on the train overviews."""
    if TFIDF in features:
        train_rows = prepared.splits["train"][0]
        adapt_tfidf(model, [t if isinstance(t, str) else "" for t in train_rows["overview"]])
