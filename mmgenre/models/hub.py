"""Pretrained encoders from TF-Hub handles or local SavedModel folders.

tensorflow_hub resolves (downloads and caches) a handle to a SavedModel folder;
keras.layers.TFSMLayer wraps it, frozen: hub.KerasLayer cannot be called inside a
Keras 3 functional model, and a trainable TFSMLayer fails in the optimizer
("'...:0_momentum' is not a valid scope name", checked with TF 2.21 / Keras 3.15).

Image encoders take [0, 1] posters (batch, height, width, 3), the TF-Hub image
convention. Text encoders take raw strings (batch,), so for these models the
pipeline skips TextVectorization (it looks at the model's input dtype).

Loading a saved .keras file that holds a TFSMLayer runs the SavedModel's code, so
Keras only allows it with safe_mode=False: mmgenre asks for that explicitly
(``allow_external_code=True`` in ``trainer.load_model``, ``--allow-external-code``
on the CLI).
"""

from __future__ import annotations

import os
import urllib.parse

import keras

from mmgenre.models.heads import classifier
from mmgenre.models.registry import register
from mmgenre.models.resnet import host_reachable


def resolve_handle(handle) -> str:
    """A TF-Hub handle or local folder -> a local SavedModel folder, or a clear error."""
    if not handle:
        raise ValueError("a hub model needs model.params.handle (a TF-Hub handle or a SavedModel folder)")
    path = handle
    if not os.path.isdir(handle):
        host = urllib.parse.urlparse(handle).hostname
        if host and not host_reachable(host):
            raise ValueError(
                f"cannot resolve TF-Hub handle {handle!r}: {host} is unreachable (no network). "
                "Download the model on a machine with network access and set handle to its "
                "local SavedModel folder (or copy it into TFHUB_CACHE_DIR).")
        import tensorflow_hub as hub

        try:
            path = hub.resolve(handle)
        except Exception as err:  # tensorflow_hub raises many kinds; name the handle instead
            raise ValueError(f"cannot resolve TF-Hub handle {handle!r}: {type(err).__name__}: "
                             f"{str(err)[:200]}") from None
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path}: not a SavedModel folder (no saved_model.pb)")
    return path


def hub_encoder(handle, output_key=None, name="hub_encoder"):
    """Frozen TFSMLayer on the SavedModel's serving_default signature."""
    return keras.layers.TFSMLayer(resolve_handle(handle), call_endpoint="serving_default",
                                  trainable=False, name=name), output_key


def _select(outputs, output_key, handle):
    if isinstance(outputs, dict):
        if output_key is None:
            if len(outputs) != 1:
                raise ValueError(f"{handle}: signature has outputs {sorted(outputs)}; "
                                 "set model.params.output_key")
            return next(iter(outputs.values()))
        if output_key not in outputs:
            raise ValueError(f"{handle}: no output {output_key!r}; outputs: {sorted(outputs)}")
        return outputs[output_key]
    return outputs


@register("hub_image", modalities=("poster",), description="frozen TF-Hub/SavedModel image encoder")
def build_hub_image(num_genres: int, task: str = "multilabel", image_size=(224, 224), handle=None,
                    output_key=None, dense_units: int = 256, dropout: float = 0.3):
    """{"poster": (batch, h, w, 3) in [0, 1]} -> encoder features -> the shared head."""
    layer, key = hub_encoder(handle, output_key, "hub_image_encoder")
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    features = _select(layer(poster), key, handle)
    return classifier({"poster": poster}, features, num_genres, task, dense_units, dropout,
                      name="hub_image")


@register("hub_text", modalities=("overview",), description="frozen TF-Hub/SavedModel text encoder")
def build_hub_text(num_genres: int, task: str = "multilabel", handle=None, output_key=None,
                   dense_units: int = 128, dropout: float = 0.3):
    """{"overview": (batch,) strings} -> encoder features -> the shared head."""
    layer, key = hub_encoder(handle, output_key, "hub_text_encoder")
    overview = keras.Input(shape=(), dtype="string", name="overview")
    features = _select(layer(overview), key, handle)
    return classifier({"overview": overview}, features, num_genres, task, dense_units, dropout,
                      name="hub_text")
