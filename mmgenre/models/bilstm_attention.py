"""Bidirectional LSTM with attention pooling over the overview (the study's proposal)."""

from __future__ import annotations

import keras

from mmgenre.models.heads import check_rates, classifier
from mmgenre.models.layers import AttentionPooling
from mmgenre.models.registry import register


@register("bilstm_attention", modalities=("overview",),
          description="BiLSTM + masked attention pooling over words")
def build_bilstm_attention(num_genres: int, task: str = "multilabel", vocab_size: int = 10000,
                           sequence_length: int = 200, embedding_dim: int = 128, units: int = 64,
                           attention_units: int = 64, embedding_dropout: float = 0.2,
                           dropout: float = 0.3):
    """Builds Embedding -> BiLSTM(return_sequences) -> AttentionPooling -> head.

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" or "single".
        vocab_size / sequence_length: int. from the fitted vectorizer.
        embedding_dim: int. word embedding size. Defaults to 128.
        units: int. LSTM units per direction. Defaults to 64.
        attention_units: int. attention projection size. Defaults to 64.
        embedding_dropout: float. dropout on word embeddings (small data). Defaults to 0.2.
        dropout: float. dropout before "genres". Defaults to 0.3.

    Returns:
        keras.Model: {"overview": (batch, sequence_length) int64} -> (batch, num_genres);
        layer "attention" outputs [(batch, 2 * units), (batch, sequence_length) weights].
    """
    check_rates(embedding_dropout=embedding_dropout)
    overview = keras.Input(shape=(sequence_length,), dtype="int64", name="overview")
    x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="token_embedding")(overview)
    x = keras.layers.Dropout(embedding_dropout, name="embedding_dropout")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True), name="bilstm")(x)
    pooled, _ = AttentionPooling(attention_units, name="attention")(x)
    return classifier({"overview": overview}, pooled, num_genres, task, 2 * units, dropout,
                      name="bilstm_attention")


def attention_weights(model, overview_ids):
    """(batch, sequence_length) attention weights of a bilstm_attention model."""
    probe = keras.Model(model.inputs, model.get_layer("attention").output[1])
    return probe.predict({"overview": overview_ids}, verbose=0)
