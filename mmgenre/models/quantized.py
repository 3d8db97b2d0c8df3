"""A cached-feature model served at int8: its graph's head behind the LiteRT encoders
(``mmgenre.encoders.int8``: text encoders int8, image encoders float32 under XNNPack).

A run with ``model.params.precision: int8`` (``linear_probe``, ``encoder_head``) fits its
head on embeddings from the int8 encoders (``mmgenre.encoders.int8``), so it must be served
with the same ones. Its best.keras is the whole float graph as ever (the head and TF-IDF are
float32 Keras layers; the float backbones keep the file a model for `export` and Keras); this
module cuts that graph at each encoder's pooled output and puts the int8 encoder there:

    overview strings ─> graph's tokenizer + packer (+ trim) ─> int8 text encoder ─┐
    poster (batch, h, w, 3) in [0, 1] ─> graph's encoder scaling ─> LiteRT image enc. ─┼─> graph's
    overview strings (TF-IDF, when a feature) ─────────────────────────────────────┘   "<f>_l2" on

``Int8Pipeline.predict_on_batch`` takes and returns what the Keras model's does, so
evaluation, batch prediction and `predict` use it unchanged.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from mmgenre.encoders.int8 import check_precision, int8_encoder, int8_sha256
from mmgenre.models.predict_step import inference_function
from mmgenre.models.probe import TFIDF, feature_kind


def precision_of(model_params: dict) -> str:
    return check_precision(model_params.get("precision", "float32"))


class Int8Pipeline:
    """``model`` (a linear_probe or encoder_head graph) with ``features``' encoders at int8.

    predict_on_batch({"overview": (batch,) strings, "poster": (batch, h, w, 3) float in
    [0, 1]}) -> (batch, genres) probabilities; ``input`` is the graph's (raw inputs).
    """

    def __init__(self, model, features):
        self.model, self.features = model, list(features)
        self.input = model.input
        self.encoders = [f for f in self.features if f != TFIDF]
        self.head = head_on_features(model, self.features)
        self._head = inference_function(self.head)
        self.prepare = {f: inference_function(encoder_inputs(model, f)) for f in self.encoders}
        self.run = {f: int8_encoder(f, feature_kind(f)) for f in self.encoders}

    def embeddings(self, inputs) -> dict:
        """{feature: (batch, dim) float32} the int8 encoders' pooled outputs for ``inputs``."""
        out = {}
        for f in self.encoders:
            if feature_kind(f) == "text":
                token_ids, mask = self.prepare[f](inputs["overview"])
                out[f] = self.run[f](np.asarray(token_ids), np.asarray(mask))
            else:
                out[f] = self.run[f](np.asarray(self.prepare[f](inputs["poster"])))
        return out

    def predict_on_batch(self, inputs):
        x = self.embeddings(inputs)
        if TFIDF in self.features:
            x["overview"] = inputs["overview"]
        return np.asarray(self._head(x))


# The graph is replayed from its layers on new inputs, not cut with keras.Model(intermediate
# tensors, ...): a model cut that way no longer saved (Keras 3.15: "could not find node key").
def head_on_features(model, features):
    """Keras model: {"<encoder>": (batch, dim) pooled features, "overview": (batch,) strings
    when TF-IDF is a feature} -> (batch, genres) probabilities, sharing ``model``'s layers from
    each "<feature>_l2" on (a linear_probe's "features" + "logits", or an encoder_head's "head",
    then "genres")."""
    inputs, blocks = {}, {}
    for f in features:
        if f == TFIDF:
            inputs["overview"] = keras.Input(shape=(), dtype="string", name="overview")
            x = model.get_layer("tfidf_weighting")(model.get_layer("tfidf")(inputs["overview"]))
            blocks[f] = model.get_layer("tfidf_l2")(x)
        else:
            l2 = model.get_layer(f"{f}_l2")
            inputs[f] = keras.Input(shape=(int(l2.input.shape[-1]),), name=f)
            blocks[f] = l2(inputs[f])
    if "head" in {layer.name for layer in model.layers}:  # encoder_head
        logits = model.get_layer("head")(blocks)
    else:  # linear_probe
        branches = list(blocks.values())
        x = model.get_layer("features")(branches if len(branches) > 1 else branches[0])
        logits = model.get_layer("logits")(x)
    return keras.Model(inputs, model.get_layer("genres")(logits), name=f"{model.name}_head")


def encoder_inputs(model, feature):
    """Keras model: raw input -> what ``feature``'s int8 encoder takes (token ids and padding
    mask from the graph's tokenizer, packer and trim; or the graph's scaled pixels)."""
    names = {layer.name for layer in model.layers}
    if feature_kind(feature) == "text":
        overview = keras.Input(shape=(), dtype="string", name="overview")
        x = model.get_layer(f"{feature}_packer")(model.get_layer(f"{feature}_tokenizer")(overview))
        if f"{feature}_trim_padding" in names:
            x = model.get_layer(f"{feature}_trim_padding")(list(x))
        return keras.Model(overview, list(x), name=f"{feature}_inputs")
    poster = keras.Input(shape=model.input["poster"].shape[1:], name="poster")
    return keras.Model(poster, model.get_layer(f"{feature}_encoder_scaling")(poster),
                       name=f"{feature}_inputs")


def int8_encoders(model_params: dict) -> dict:
    """{"int8_encoders": {feature: SHA-256 of its int8 file}} for metrics.json ({} at float32):
    what ``check_int8_encoders`` compares against when the run is served."""
    if precision_of(model_params) != "int8":
        return {}
    return {"int8_encoders": {f: int8_sha256(f, feature_kind(f))
                              for f in model_params["features"] if f != TFIDF}}


def check_int8_encoders(recorded: dict | None, run_dir: str):
    """Warns (one line per encoder) when an int8 file differs from the one the run was
    fitted with (another TensorFlow converted it): scores then move by the quantization noise."""
    for feature, sha in (recorded or {}).items():
        now = int8_sha256(feature, feature_kind(feature))
        if now != sha:
            print(f"warning: {run_dir} was fitted on int8 {feature} {sha[:12]}, this machine's is "
                  f"{now[:12]}: its scores may differ slightly from the run's", file=sys.stderr)


def as_served(model, model_params: dict):
    """The model as a run with ``model_params`` serves it: ``model`` itself at float32, an
    ``Int8Pipeline`` over it at int8."""
    if precision_of(model_params) == "int8":
        return Int8Pipeline(model, model_params["features"])
    return model
