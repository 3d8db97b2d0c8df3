"""mmgenre's custom Keras layers, registered so saved models reload by name.

Every layer keeps configuration in __init__, creates weights in build(), and
returns its arguments from get_config, so ``keras.models.load_model`` needs no
custom_objects.
"""

from __future__ import annotations

import keras
from keras import ops


class OutdatedRunError(ValueError):
    """A saved model this mmgenre no longer loads (made by an earlier layout); retrain it."""


@keras.saving.register_keras_serializable(package="mmgenre")
class AttentionPooling(keras.layers.Layer):
    """Additive attention pooling over time that respects the padding mask.

    score_t = v . tanh(W h_t + b); weights = softmax over unmasked steps;
    output = sum_t weights_t h_t (Bahdanau-style, as in the study's proposal).

    Args:
        units: int. size of the attention projection. Defaults to 64.

    Call:
        inputs: (batch, seq_len, dim); mask: (batch, seq_len) bool, from Embedding(mask_zero=True).
    Returns:
        [(batch, dim) pooled, (batch, seq_len) attention weights] (padding gets 0).
    """

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        self.w = self.add_weight(name="w", shape=(dim, self.units), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")

    def call(self, inputs, mask=None):
        scores = ops.sum(ops.tanh(ops.matmul(inputs, self.w) + self.b) * self.v, axis=-1)
        if mask is not None:
            # A large negative score, not -inf: a fully padded row then gets uniform
            # weights over zeros instead of NaN.
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=-1)
        if mask is not None:
            weights = weights * ops.cast(mask, weights.dtype)
        pooled = ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)
        return [pooled, weights]

    def compute_mask(self, inputs, mask=None):
        return [None, None]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], input_shape[-1]), (input_shape[0], input_shape[1])]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def present(raw):
    """(batch,) bool: the raw input is there. An input counts as absent when it is all zeros (a
    zero poster, an overview that vectorizes to padding only) or an empty string."""
    if raw.dtype == "string":  # raw overviews for text encoders: "" is absent
        import tensorflow as tf

        return tf.strings.length(raw) > 0
    raw = ops.cast(raw, "float32")
    return ops.max(ops.reshape(ops.abs(raw), (ops.shape(raw)[0], -1)), axis=1) > 0


@keras.saving.register_keras_serializable(package="mmgenre")
class Presence(keras.layers.Layer):
    """Raw input (batch, ...) -> (batch, 1) float32: 1 where the input is there (``present``).

    Part of a fusion's backbone, so a frozen backbone's features and the presence of each
    input are cached together and the head's ``MissingModality`` reads the flag.
    """

    def call(self, raw):
        return ops.expand_dims(ops.cast(present(raw), "float32"), -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


@keras.saving.register_keras_serializable(package="mmgenre")
class MissingModality(keras.layers.Layer):
    """Swaps a branch embedding for a learned stand-in when its input is absent.

    During training, ``rate`` also drops present inputs at random (modality
    dropout), so the fused model learns to predict from either modality alone.

    Args:
        rate: float. probability of dropping a present input while training.

    Call:
        [embedding (batch, dim), presence flag (batch, 1), 1.0 where the input is there]
        -> (batch, dim).
    """

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"modality dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(1337)

    @classmethod
    def from_config(cls, config):
        # Fusions saved before the presence flag (from_presence false) fed the raw input here;
        # reading it as a flag would silently change their scores, so they are refused.
        if not config.pop("from_presence", True):
            raise OutdatedRunError("a fusion saved before presence flags (MissingModality "
                                   "reading the raw input)")
        return cls(**config)

    def build(self, input_shape):
        self.stand_in = self.add_weight(name="stand_in", shape=(input_shape[0][-1],),
                                        initializer="zeros")

    def call(self, inputs, training=False):
        embedding, flag = inputs
        there = flag[:, 0] > 0
        if training and self.rate > 0:
            keep = keras.random.uniform((ops.shape(embedding)[0],), seed=self.seed_generator) >= self.rate
            there = ops.logical_and(there, keep)
        there = ops.expand_dims(ops.cast(there, embedding.dtype), -1)
        return embedding * there + ops.cast(self.stand_in, embedding.dtype) * (1.0 - there)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="mmgenre")
class GatedMultimodalUnit(keras.layers.Layer):
    """Gated multimodal unit (Arevalo et al. 2017, the MM-IMDb paper, eq. 1-4).

    h_v = tanh(W_v x_v); h_t = tanh(W_t x_t); z = sigmoid(W_z [x_v; x_t]);
    h = z * h_v + (1 - z) * h_t. z is the per-unit weight of the image.

    Args:
        units: int. size of h. Defaults to 128.

    Call:
        [x_v (batch, dim_v), x_t (batch, dim_t)] -> [h (batch, units), z (batch, units)].
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        dim_v, dim_t = input_shape[0][-1], input_shape[1][-1]
        self.w_v = self.add_weight(name="w_v", shape=(dim_v, self.units), initializer="glorot_uniform")
        self.w_t = self.add_weight(name="w_t", shape=(dim_t, self.units), initializer="glorot_uniform")
        self.w_z = self.add_weight(name="w_z", shape=(dim_v + dim_t, self.units),
                                   initializer="glorot_uniform")

    def call(self, inputs):
        x_v, x_t = inputs
        h_v = ops.tanh(ops.matmul(x_v, self.w_v))
        h_t = ops.tanh(ops.matmul(x_t, self.w_t))
        z = ops.sigmoid(ops.matmul(ops.concatenate([x_v, x_t], axis=-1), self.w_z))
        return [z * h_v + (1.0 - z) * h_t, z]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, self.units), (batch, self.units)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="mmgenre")
class ImageNetPreprocess(keras.layers.Layer):
    """[0, 1] RGB -> the "caffe" input of keras.applications ResNet50 (BGR, mean-subtracted).

    Inside the model, so a saved ResNet takes the same [0, 1] posters as every
    other mmgenre image model.
    """

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, images):
        bgr = ops.flip(images * 255.0, axis=-1)
        return bgr - ops.convert_to_tensor(self.MEAN_BGR, dtype=bgr.dtype)


@keras.saving.register_keras_serializable(package="mmgenre")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over real tokens, then L2 normalisation (sentence-transformers' mean pooling +
    Normalize modules, as all-MiniLM-L6-v2's modules.json lists them).

    Call args: [sequence (batch, seq, hidden), padding_mask (batch, seq), 1 = token].
    Returns (batch, hidden), unit length; an all-padding row (an absent overview) is 0.
    """

    def call(self, inputs):
        sequence, mask = inputs
        mask = ops.expand_dims(ops.cast(mask, sequence.dtype), -1)  # TFLite-convertible, unlike [..., None]
        pooled = ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        return pooled / ops.maximum(ops.norm(pooled, axis=-1, keepdims=True), 1e-12)


@keras.saving.register_keras_serializable(package="mmgenre")
class TrimPadding(keras.layers.Layer):
    """Cuts a packed batch to its longest real sequence.

    keras-hub's StartEndPacker pads every overview to a fixed length; a batch
    then runs the encoder over its padding too. Masked tokens do not change the
    pooled embedding, so trimming to the batch's longest overview gives the same
    features, faster: one overview padded to 256 word pieces instead of its own
    ~65 (results/encoder_speed.md measured 3.0x for length-bucketed batches).

    Call args: [token_ids (batch, seq), padding_mask (batch, seq)].
    Returns the two cut to (batch, longest), at least one column.
    """

    def call(self, inputs):
        token_ids, mask = inputs
        width = ops.maximum(ops.max(ops.sum(ops.cast(mask, "int32"), axis=1)), 1)
        return token_ids[:, :width], mask[:, :width]

    def compute_output_shape(self, input_shape):
        return tuple((shape[0], None) for shape in input_shape)


@keras.saving.register_keras_serializable(package="mmgenre")
class PlattCalibration(keras.layers.Layer):
    """Per-genre Platt scaling (Platt 1999): logits z -> sigmoid(a * z + b).

    The scales a and offsets b are fitted outside the graph on out-of-fold
    train logits (``mmgenre.training.calibration``) and stored here as non-trainable
    weights, so the saved model outputs calibrated probabilities by itself.
    Identity scale and zero offset by default: plain sigmoid.

    Args:
        units: int. number of genres.

    Call args: logits (batch, units). Returns probabilities (batch, units).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", trainable=False,
                                     name="scale")
        self.offset = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False,
                                      name="offset")

    def call(self, logits):
        return ops.sigmoid(ops.cast(logits, "float32") * self.scale + self.offset)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="mmgenre")
class ScoreFusion(keras.layers.Layer):
    """Score-level late fusion of trained models' probabilities, as a layer.

    Space "logit_z": each member's probabilities become logits, z-scored per
    genre with that member's dev mean and spread, and averaged with the chosen
    member weights (``mmgenre.evaluation.score_fusion``: members calibrated
    differently would otherwise follow the most confident one). Space
    "probability": the weighted average of the probabilities, as a logit. The
    statistics and weights are non-trainable weights set once from the members'
    saved scores, so the saved graph fuses by itself; a ``PlattCalibration``
    after it turns the fused logit into a probability.

    Args:
        members: int. number of fused models M.
        units: int. number of genres.
        space: "logit_z" or "probability".

    Call args: list of M (batch, units) probabilities. Returns (batch, units) fused logits.
    """

    EPSILON = 1e-6  # probabilities are clipped to [eps, 1 - eps] before the logit

    def __init__(self, members: int, units: int, space: str = "logit_z", **kwargs):
        super().__init__(**kwargs)
        if space not in ("logit_z", "probability"):
            raise ValueError(f"space must be 'logit_z' or 'probability', got {space!r}")
        self.members, self.units, self.space = int(members), int(units), space

    def build(self, input_shape):
        shape = (self.members, self.units)
        self.mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="mean")
        self.spread = self.add_weight(shape=shape, initializer="ones", trainable=False,
                                      name="spread")
        self.weight = self.add_weight(shape=(self.members,), initializer="ones", trainable=False,
                                      name="weight")

    @classmethod
    def logit(cls, p):
        p = ops.clip(ops.cast(p, "float32"), cls.EPSILON, 1 - cls.EPSILON)
        return ops.log(p) - ops.log(1 - p)

    def call(self, probabilities):
        p = ops.stack([ops.cast(x, "float32") for x in probabilities], axis=0)  # (M, batch, units)
        w = ops.reshape(self.weight, (self.members, 1, 1))
        if self.space == "probability":
            return self.logit(ops.sum(w * p, axis=0))
        z = (self.logit(p) - self.mean[:, None, :]) / self.spread[:, None, :]
        return ops.sum(w * z, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "members": self.members, "units": self.units,
                "space": self.space}


@keras.saving.register_keras_serializable(package="mmgenre")
class SublinearTfIdf(keras.layers.Layer):
    """Term counts -> (1 + log count) * idf, scikit-learn's TfidfVectorizer(sublinear_tf=True).

    Keras' own output_mode "tf_idf" weighs raw counts with log(1 + n / (1 + df));
    on the paired set's train split its 5-fold mAP was 0.288 against 0.307 for
    sublinear counts with smoothed idf, ln((1 + n) / (1 + df)) + 1, and terms
    seen in fewer than two train overviews dropped (idf 0), as the classical
    baseline does. The idf vector is fitted outside (``backbones.adapt_tfidf``)
    and stored as a non-trainable weight.

    Args:
        units: int. vocabulary size (the vectorizer's max_tokens).

    Call args: counts (batch, units). Returns (batch, units) weights.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.idf = self.add_weight(shape=(self.units,), initializer="ones", trainable=False,
                                   name="idf")

    def call(self, counts):
        counts = ops.cast(counts, "float32")
        tf = ops.where(counts > 0, 1.0 + ops.log(ops.maximum(counts, 1.0)), 0.0)
        return tf * self.idf

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units}
