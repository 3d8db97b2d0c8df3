"""A wide bag-of-words text branch: the deep-model counterpart of TF-IDF + logistic regression.

On ~1,000 training overviews a linear model over word counts beats the LSTMs (see
results/comparison.md: TF-IDF + logistic regression has the best text mAP), so this
branch gives fused models the same strong, cheap text signal.
"""

from __future__ import annotations

import keras
from keras import ops

from mmgenre.models.heads import check_rates, classifier
from mmgenre.models.registry import register


@keras.saving.register_keras_serializable(package="mmgenre")
class BagOfWords(keras.layers.Layer):
    """(batch, seq_len) token ids -> (batch, vocab_size + bigram_buckets) log(1 + count).

    log(1 + count) is the sublinear term frequency of TF-IDF; the Dense layer after it
    learns per-word weights, which plays the role of IDF. Padding (id 0) and
    out-of-vocabulary words (id 1) carry no word identity and are not counted.

    Args:
        vocab_size: int. number of token ids.
        bigram_buckets: int. if > 0, also count pairs of adjacent in-vocabulary words,
            hashed into this many buckets (the bag of n-grams of the TF-IDF baseline,
            which uses word bigrams). Defaults to 0 (words only).
    """

    # Bigram (a, b) goes to bucket (a * _HASH_MULTIPLIER + b) mod bigram_buckets: a prime
    # above any vocabulary size keeps (a, b) and (b, a) apart; int64 cannot overflow.
    _HASH_MULTIPLIER = 1_000_003

    def __init__(self, vocab_size: int, bigram_buckets: int = 0, **kwargs):
        super().__init__(**kwargs)
        if bigram_buckets < 0:
            raise ValueError(f"bigram_buckets must be >= 0, got {bigram_buckets}")
        self.vocab_size, self.bigram_buckets = vocab_size, bigram_buckets
        # A bincount, not a (batch, seq_len, vocab) one-hot: one training run on the
        # sample set took 5.5 min with one_hot and 55 s with this (2 CPU cores).
        self.counter = keras.layers.CategoryEncoding(vocab_size, output_mode="count",
                                                     name="counter")
        if bigram_buckets:
            # One extra bucket collects pairs touching padding or OOV; it is dropped.
            self.bigram_counter = keras.layers.CategoryEncoding(
                bigram_buckets + 1, output_mode="count", name="bigram_counter")

    def build(self, input_shape):
        self.counter.build(input_shape)
        if self.bigram_buckets:
            self.bigram_counter.build((input_shape[0], input_shape[1] - 1))

    def call(self, ids):
        counts = self.counter(ids)
        mask = ops.concatenate([ops.zeros((2,)), ops.ones((self.vocab_size - 2,))])
        features = ops.log1p(counts * mask)
        if not self.bigram_buckets:
            return features
        ids = ops.cast(ids, "int64")
        first, second = ids[:, :-1], ids[:, 1:]
        bucket = ops.mod(first * self._HASH_MULTIPLIER + second, self.bigram_buckets)
        bucket = ops.where((first > 1) & (second > 1), bucket, self.bigram_buckets)
        bigrams = self.bigram_counter(bucket)[:, : self.bigram_buckets]
        return ops.concatenate([features, ops.log1p(bigrams)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.vocab_size + self.bigram_buckets)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "bigram_buckets": self.bigram_buckets}


@register("bag_of_words", modalities=("overview",),
          description="log-count bag of words + Dense (wide text branch)")
def build_bag_of_words(num_genres: int, task: str = "multilabel", vocab_size: int = 10000,
                       sequence_length: int = 200, units: int = 64, input_dropout: float = 0.5,
                       dropout: float = 0.3, l2: float = 1e-4, bigram_buckets: int = 0):
    """Builds BagOfWords -> Dropout, then the shared head (L2 on its Dense "embedding").

    Args:
        num_genres, task, vocab_size, sequence_length: from the data.
        units: int. width of the "embedding" layer. Defaults to 64.
        input_dropout: float. dropout on word features (drops whole words). Defaults to 0.5.
        dropout: float. dropout before "genres". Defaults to 0.3.
        l2: float. L2 penalty on the word weights. Defaults to 1e-4.
        bigram_buckets: int. hashed word-bigram features beside the words (0: none).

    Returns:
        keras.Model: {"overview": (batch, sequence_length) int64} -> (batch, num_genres).
    """
    check_rates(input_dropout=input_dropout)
    overview = keras.Input(shape=(sequence_length,), dtype="int64", name="overview")
    x = BagOfWords(vocab_size, bigram_buckets, name="bag_of_words")(overview)
    x = keras.layers.Dropout(input_dropout, name="word_dropout")(x)
    return classifier({"overview": overview}, x, num_genres, task, units, dropout, l2,
                      name="bag_of_words")
