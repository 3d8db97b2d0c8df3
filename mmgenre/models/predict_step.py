"""Inference steps of a Keras model as tf.functions of their own (evaluation, batch
prediction, the graph check and the cached heads' out-of-fold scores use them)."""

from __future__ import annotations

import functools

import keras
import tensorflow as tf


def inference_function(model, signature=None):
    """``model`` (a Keras model) for inference as its own tf.function: traced for ``signature``
    (the inputs' TensorSpecs) when given, else with shapes relaxed.

    Why not ``predict``/``predict_on_batch``: their step function is one piece of code that
    TensorFlow counts across every new model a process builds (a run, a fold's head), and
    from the fifth it printed a retracing warning no user can act on (the README's first
    command printed it twice per probe row). TensorFlow counts a function without code of its
    own (this partial) apart. Not eager either: keras-hub's tokenizers return Python lists
    there.
    """
    step = functools.partial(model, training=False)
    if signature is None:
        return tf.function(step, reduce_retracing=True)
    return tf.function(step, input_signature=[signature])


def batch_predictor(model, signature):
    """(batch inputs -> (batch, genres) probabilities) of ``model``, a Keras model or an
    ``Int8Pipeline``, for inputs of ``signature`` (a batched dataset's ``element_spec[0]``:
    the batch dimension is None).

    A Keras model's is an ``inference_function`` traced once for every batch size, kept with
    the model: each split, the missing-input variants and the graph check reuse one trace,
    where ``predict_on_batch`` traced the first batch's shape and again, relaxed, at the first
    other one (a whole graph over EfficientNet-Lite0 and MiniLM took about 3 s a trace here).
    """
    if not isinstance(model, keras.Model):
        return model.predict_on_batch
    key = repr(tf.nest.map_structure(lambda s: (tuple(s.shape), s.dtype.name), signature))
    kept = model.__dict__.setdefault("_mmgenre_batch_predictors", {})
    if key not in kept:
        kept[key] = inference_function(model, signature)
    return kept[key]
