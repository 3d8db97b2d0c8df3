"""The original study's overview model: Embedding, one LSTM, classification head."""

from __future__ import annotations

import keras

from mmgenre.models.heads import check_rates, classifier
from mmgenre.models.registry import register


@register("lstm", modalities=("overview",), description="study's Embedding + LSTM text model")
def build_lstm(num_genres: int, task: str = "multilabel", vocab_size: int = 10000,
               sequence_length: int = 200, embedding_dim: int = 128, units: int = 64,
               dropout: float = 0.3, word_dropout: float = 0.0):
    """Builds the study's overview LSTM.

    Args:
        num_genres: int. number of genres (output units).
        task: str. "multilabel" (sigmoid) or "single" (softmax).
        vocab_size: int. token ids are in [0, vocab_size); 0 is padding.
        sequence_length: int. tokens per overview.
        embedding_dim: int. word embedding size. Defaults to 128.
        units: int. LSTM units; the LSTM output is the "embedding". Defaults to 64.
        dropout: float. dropout before "genres". Defaults to 0.3.
        word_dropout: float. drops whole token vectors of the (batch, seq_len,
            embedding_dim) embeddings while training: the embedding dropout of
            Gal & Ghahramani (2016), regularisation for ~1,000 training
            overviews. Defaults to 0.0.

    Returns:
        keras.Model: {"overview": (batch, sequence_length) int64} ->
        (batch, num_genres) probabilities.
    """
    check_rates(word_dropout=word_dropout)
    overview = keras.Input(shape=(sequence_length,), dtype="int64", name="overview")
    # mask_zero: padding (id 0) must not feed the LSTM's final state.
    x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                               name="token_embedding")(overview)
    if word_dropout:
        x = keras.layers.Dropout(word_dropout, noise_shape=(None, sequence_length, 1),
                                 name="word_dropout")(x)
    x = keras.layers.LSTM(units, name="embedding")(x)  # the backbone's output is the embedding
    return classifier({"overview": overview}, x, num_genres, task, None, dropout, name="lstm")
