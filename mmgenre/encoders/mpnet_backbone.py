"""MPNet (Song et al. 2020, "MPNet: Masked and Permuted Pre-training") as a keras-hub backbone.

keras-hub 0.32 has no MPNet; all-mpnet-base-v2, the strongest sentence encoder
the package index carries, is one. It is a BERT-style post-layer-norm encoder
with three differences, each followed here as Hugging Face's modeling_mpnet
computes it (the reference benchmarks/mpnet_reference.py checks against):

* position ids count real tokens from the padding index + 1 (RoBERTa style:
  ``cumsum(mask) * mask + pad_token_id``), so padding never shifts a position;
* a T5-style bidirectional relative-position bias (32 buckets, exact up to
  distance 8, logarithmic to 128), computed once and added to the attention
  scores of all layers;
* exact GELU, layer norm epsilon 1e-5, no segment embeddings.

Written the way keras-hub writes backbones: a functional ``Backbone`` subclass
whose constructor takes plain hyperparameters and whose get_config returns
them, layers with explicit names, and a WordPiece tokenizer subclass that
names its special tokens.
"""

from __future__ import annotations

import math

import keras
import keras_hub
import numpy as np
from keras import ops


def relative_position_buckets(max_distance_seen: int, num_buckets: int = 32,
                              max_distance: int = 128) -> np.ndarray:
    """(2 * max_distance_seen + 1,) bucket of each relative position -max..max (key - query).

    Computed once in NumPy float32 as Hugging Face's ``relative_position_bucket``
    computes it in torch float32, so the graph only looks buckets up: half the
    buckets per direction, exact below ``num_buckets / 4``, logarithmic above.
    """
    relative = np.arange(-max_distance_seen, max_distance_seen + 1)
    n = -relative
    half = num_buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype(np.float32) / np.float32(exact)) / np.float32(
            math.log(max_distance / exact)) * np.float32(half - exact))
    large = np.minimum(exact + np.nan_to_num(scaled, neginf=0).astype(np.int64), half - 1)
    return (out + np.where(n < exact, n, large)).astype(np.int32)


@keras.saving.register_keras_serializable(package="mmgenre")
class MPNetEmbedding(keras.layers.Layer):
    """Token + position embeddings, layer norm, dropout.

    Call args: [token_ids (batch, seq) int, padding_mask (batch, seq) 1 = token].
    Returns (batch, seq, hidden_dim).
    """

    def __init__(self, vocabulary_size, hidden_dim, max_positions, pad_token_id=1,
                 layer_norm_epsilon=1e-5, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
        self.max_positions, self.pad_token_id = max_positions, pad_token_id
        self.layer_norm_epsilon, self.dropout = layer_norm_epsilon, dropout
        self.token_embedding = keras.layers.Embedding(vocabulary_size, hidden_dim,
                                                      dtype=self.dtype_policy, name="token_embedding")
        self.position_embedding = keras.layers.Embedding(max_positions, hidden_dim,
                                                         dtype=self.dtype_policy,
                                                         name="position_embedding")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon,
                                                          dtype=self.dtype_policy, name="layer_norm")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape):
        self.token_embedding.build(input_shape[0])
        self.position_embedding.build(input_shape[0])
        self.layer_norm.build((*input_shape[0], self.hidden_dim))
        self.built = True

    def call(self, inputs, training=False):
        token_ids, padding_mask = inputs
        mask = ops.cast(padding_mask, "int32")
        positions = ops.cumsum(mask, axis=1) * mask + self.pad_token_id
        x = self.token_embedding(token_ids) + self.position_embedding(positions)
        return self.dropout_layer(self.layer_norm(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0], self.hidden_dim)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim, "max_positions": self.max_positions,
                "pad_token_id": self.pad_token_id, "layer_norm_epsilon": self.layer_norm_epsilon,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mmgenre")
class RelativePositionBias(keras.layers.Layer):
    """The shared attention bias: (batch, seq, hidden) -> (1, num_heads, seq, seq).

    Args:
        num_heads: int. attention heads.
        num_buckets, max_distance: int. bucketing (32 and 128 in MPNet).
        max_sequence_length: int. longest sequence the bucket table covers.
    """

    def __init__(self, num_heads, num_buckets=32, max_distance=128, max_sequence_length=512,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.num_buckets = num_heads, num_buckets
        self.max_distance, self.max_sequence_length = max_distance, max_sequence_length
        self._table = relative_position_buckets(max_sequence_length, num_buckets, max_distance)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.num_buckets, self.num_heads),
                                          initializer="zeros", name="embeddings")
        self.built = True

    def call(self, hidden):
        length = ops.shape(hidden)[1]
        positions = ops.arange(length)
        # expand_dims, not [None, :]: TFLite has no builtin for strided slices that add axes.
        relative = (ops.expand_dims(positions, 0) - ops.expand_dims(positions, 1)
                    + self.max_sequence_length)
        buckets = ops.take(ops.convert_to_tensor(self._table), relative)  # (seq, seq)
        bias = ops.take(self.embeddings, buckets, axis=0)  # (seq, seq, heads)
        return ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "num_buckets": self.num_buckets, "max_distance": self.max_distance,
                "max_sequence_length": self.max_sequence_length}


@keras.saving.register_keras_serializable(package="mmgenre")
class MPNetTransformerLayer(keras.layers.Layer):
    """Post-layer-norm transformer block with an additive attention bias.

    Call args: [x (batch, seq, hidden), bias (1, heads, seq, seq), padding_mask (batch, seq)].
    Returns (batch, seq, hidden).
    """

    def __init__(self, num_heads, hidden_dim, intermediate_dim, layer_norm_epsilon=1e-5,
                 dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.hidden_dim = num_heads, hidden_dim
        self.intermediate_dim, self.layer_norm_epsilon = intermediate_dim, layer_norm_epsilon
        self.dropout = dropout
        dense = lambda units, name, act=None: keras.layers.Dense(  # noqa: E731
            units, activation=act, dtype=self.dtype_policy, name=name)
        self.query, self.key, self.value = (dense(hidden_dim, n) for n in ("query", "key", "value"))
        self.attention_output = dense(hidden_dim, "attention_output")
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm")
        self.intermediate = dense(intermediate_dim, "intermediate",
                                  lambda x: keras.activations.gelu(x, approximate=False))
        self.output_dense = dense(hidden_dim, "output")
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="output_norm")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape):
        shape = input_shape[0]
        for layer in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            layer.build(shape)
        self.output_dense.build((*shape[:-1], self.intermediate_dim))
        self.attention_norm.build(shape)
        self.output_norm.build(shape)
        self.built = True

    def _heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, self.hidden_dim // self.num_heads))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, seq, head_dim)

    def call(self, inputs, training=False):
        x, bias, padding_mask = inputs
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(
            self.hidden_dim // self.num_heads)
        keep = ops.expand_dims(ops.cast(padding_mask, "bool"), (1, 2))  # (batch, 1, 1, seq)
        scores = ops.where(keep, scores + ops.cast(bias, scores.dtype), -1e9)
        weights = self.dropout_layer(ops.softmax(scores, axis=-1), training=training)
        context = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        context = ops.reshape(context, ops.shape(x))
        attended = self.attention_norm(
            x + self.dropout_layer(self.attention_output(context), training=training))
        hidden = self.output_dense(self.intermediate(attended))
        return self.output_norm(attended + self.dropout_layer(hidden, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mmgenre")
class MPNetBackbone(keras_hub.models.Backbone):
    """MPNet encoder: token ids and padding mask -> contextual token vectors.

    Args:
        vocabulary_size: int. word pieces (30,527 in all-mpnet-base-v2).
        num_layers: int. transformer layers (12).
        num_heads: int. attention heads (12).
        hidden_dim: int. width (768).
        intermediate_dim: int. feed-forward width (3,072).
        max_sequence_length: int. longest input in tokens (512: 514 positions less the
            padding offset).
        num_buckets, max_distance: int. relative-position bucketing. Defaults to 32, 128.
        pad_token_id: int. the padding id, also the position offset. Defaults to 1.
        layer_norm_epsilon: float. Defaults to 1e-5.
        dropout: float. Defaults to 0.1.

    Inputs: {"token_ids": (batch, seq) int32, "padding_mask": (batch, seq) int32}.
    Outputs: {"sequence_output": (batch, seq, hidden_dim)}.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                 max_sequence_length=512, num_buckets=32, max_distance=128, pad_token_id=1,
                 layer_norm_epsilon=1e-5, dropout=0.1, dtype=None, **kwargs):
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be a multiple of num_heads {num_heads}")
        self.embeddings = MPNetEmbedding(vocabulary_size, hidden_dim,
                                         max_sequence_length + pad_token_id + 1, pad_token_id,
                                         layer_norm_epsilon, dropout, dtype=dtype, name="embeddings")
        self.position_bias = RelativePositionBias(num_heads, num_buckets, max_distance,
                                                  max_sequence_length, dtype=dtype,
                                                  name="relative_position_bias")
        self.transformer_layers = [
            MPNetTransformerLayer(num_heads, hidden_dim, intermediate_dim, layer_norm_epsilon,
                                  dropout, dtype=dtype, name=f"transformer_layer_{i}")
            for i in range(num_layers)]
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.embeddings([token_ids, padding_mask])
        bias = self.position_bias(x)
        for layer in self.transformer_layers:
            x = layer([x, bias, padding_mask])
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask},
                         outputs={"sequence_output": x}, dtype=dtype, **kwargs)
        self.vocabulary_size, self.num_layers, self.num_heads = vocabulary_size, num_layers, num_heads
        self.hidden_dim, self.intermediate_dim = hidden_dim, intermediate_dim
        self.max_sequence_length, self.num_buckets = max_sequence_length, num_buckets
        self.max_distance, self.pad_token_id = max_distance, pad_token_id
        self.layer_norm_epsilon, self.dropout = layer_norm_epsilon, dropout

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim, "intermediate_dim": self.intermediate_dim,
                "max_sequence_length": self.max_sequence_length, "num_buckets": self.num_buckets,
                "max_distance": self.max_distance, "pad_token_id": self.pad_token_id,
                "layer_norm_epsilon": self.layer_norm_epsilon, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mmgenre")
class MPNetTokenizer(keras_hub.tokenizers.WordPieceTokenizer):
    """Lower-cased, accent-stripped WordPiece with MPNet's special tokens (<s>, </s>, <pad>).

    Args:
        vocabulary: str or list. vocab.txt or its tokens, ordered by id.
    """

    def __init__(self, vocabulary=None, **kwargs):
        self._add_special_token("<s>", "cls_token")
        self._add_special_token("</s>", "sep_token")
        self._add_special_token("<pad>", "pad_token")
        self._add_special_token("<s>", "start_token")
        self._add_special_token("</s>", "end_token")
        kwargs.update(lowercase=True, strip_accents=True, oov_token="[UNK]")
        super().__init__(vocabulary=vocabulary, **kwargs)

    def get_config(self):
        config = super().get_config()
        for key in ("lowercase", "strip_accents", "oov_token"):
            config.pop(key, None)
        return config
