"""Feature backbones: raw input -> (batch, dim) pooled features, shared by every head.

A backbone is the part of a model that a frozen run computes once and caches
(keras-hub's Backbone / Task split: BertBackbone + a classifier head). Each
function here takes a symbolic Keras input and returns the pooled features;
heads (``heads.genre_head``, ``probe.build_linear_probe``) and fusions stack on
top. The encoder backbones compute exactly what ``mmgenre.encoders`` caches for
the same encoder, so a head trained on cached embeddings runs unchanged behind
the whole graph (tests/test_probe.py checks the match to 1e-5).
"""

from __future__ import annotations

import keras

from mmgenre.models.layers import MaskedMeanPooling, SublinearTfIdf, TrimPadding


def text_encoder_backbone(overview, encoder: str = "minilm", sequence_length: int | None = None,
                          prefix: str = ""):
    """(batch,) overview strings -> (batch, hidden) mean-pooled, L2-normalised embeddings.

    Args:
        overview: symbolic string input, shape (batch,).
        encoder: str. a known text encoder, a Hugging Face-format folder or a preset handle.
        sequence_length: int. word pieces kept, [CLS] and [SEP] included; None keeps what
            ``mmgenre.encoders.text.embed_texts`` keeps (the encoder's limit, at most 256), and
            each batch is then cut to its longest overview (``TrimPadding``).
        prefix: str. prefix of the layer names ("tokenizer", "packer", "backbone"), so two
            text encoders fit in one model.
    """
    import keras_hub

    from mmgenre.encoders.loading import backbone_inputs, load_text_encoder
    from mmgenre.encoders.text import max_tokens

    backbone, tokenizer = load_text_encoder(encoder)
    backbone.name, tokenizer.name = f"{prefix}backbone", f"{prefix}tokenizer"
    trim = sequence_length is None
    sequence_length = sequence_length or min(max_tokens(encoder), backbone.max_sequence_length)
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=sequence_length, start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id, pad_value=tokenizer.pad_token_id,
        return_padding_mask=True, name=f"{prefix}packer")
    token_ids, padding_mask = packer(tokenizer(overview))
    if trim:
        token_ids, padding_mask = TrimPadding(name=f"{prefix}trim_padding")([token_ids, padding_mask])
    sequence = backbone(backbone_inputs(backbone, token_ids, padding_mask))["sequence_output"]
    return MaskedMeanPooling(name=f"{prefix}pooled")([sequence, padding_mask])


def image_encoder_backbone(poster, encoder: str = "efficientnet_lite0", prefix: str = ""):
    """(batch, height, width, 3) posters in [0, 1] -> (batch, channels) averaged features.

    The checkpoint's own input scaling is applied inside ((x - 127) / 128 on
    0-255 pixels for EfficientNet-Lite0); BatchNorm runs in inference mode.

    Returns (features, settings): settings["image_size"] is the size the
    checkpoint (and its cached embeddings) use.
    """
    from mmgenre.encoders.loading import load_image_encoder

    backbone, settings = load_image_encoder(encoder)
    backbone.name = f"{prefix}backbone"
    offset, divisor = settings["input_scale"]
    x = keras.layers.Rescaling(255.0 / divisor, offset=-offset / divisor,
                               name=f"{prefix}encoder_scaling")(poster)
    x = backbone(x, training=False)  # BatchNorm in inference mode, frozen or not
    return keras.layers.GlobalAveragePooling2D(name=f"{prefix}pooled")(x), settings


def tfidf_backbone(overview, max_tokens: int = 20000, ngrams: int = 2, prefix: str = ""):
    """(batch,) overview strings -> (batch, max_tokens) L2-normalised TF-IDF of word n-grams.

    keras.layers.TextVectorization counts uni- and bigrams; ``SublinearTfIdf``
    weighs them as scikit-learn's sublinear TF-IDF does. Both are fitted on the
    train overviews before the head (``adapt_tfidf``) and saved with the model.
    Layers: "<prefix>tfidf" (vectorizer), "<prefix>tfidf_weighting", "<prefix>tfidf_l2".
    """
    # pad_to_max_tokens: a fixed width, so the head can be built before adapting.
    vectorizer = keras.layers.TextVectorization(max_tokens=max_tokens, ngrams=ngrams,
                                                output_mode="count", pad_to_max_tokens=True,
                                                name=f"{prefix}tfidf")
    x = SublinearTfIdf(max_tokens, name=f"{prefix}tfidf_weighting")(vectorizer(overview))
    return keras.layers.UnitNormalization(name=f"{prefix}tfidf_l2")(x)


def adapt_tfidf(model, texts, min_df: int = 2, prefix: str = ""):
    """Fits a ``tfidf_backbone`` of ``model`` on ``texts`` (the train overviews): the
    vectorizer's vocabulary (the most frequent n-grams) and the smoothed idf of each,
    0 for n-grams in fewer than ``min_df`` overviews and for the out-of-vocabulary slot."""
    import numpy as np

    vectorizer = model.get_layer(f"{prefix}tfidf")
    texts = np.asarray(texts, dtype=object)
    vectorizer.adapt(texts, batch_size=256)
    df = np.zeros(model.get_layer(f"{prefix}tfidf_weighting").units)
    for start in range(0, len(texts), 256):
        df += (np.asarray(vectorizer(texts[start:start + 256])) > 0).sum(axis=0)
    idf = np.log((1 + len(texts)) / (1 + df)) + 1
    idf[(df < min_df)] = 0.0
    idf[0] = 0.0  # [UNK]: every n-gram outside the vocabulary
    model.get_layer(f"{prefix}tfidf_weighting").set_weights([idf.astype("float32")])
