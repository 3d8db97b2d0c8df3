"""Loading frozen encoders: from a prepared folder (or keras-hub preset) into memory, and the
few a process keeps loaded and traced (the embedders reuse them; models build their own).

Below ``text`` and ``image`` (which embed with what is loaded here) and above ``sources``
(which fetches and verifies the folders): the one place an encoder folder becomes a model.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import json
import os
import sys

from mmgenre import files
from mmgenre.encoders import sources
from mmgenre.encoders.sources import EncoderError, resolve

CONVERTERS = "mmgenre.encoders.converters"  # the package of mmgenre's own checkpoint converters


def model_type(preset: str) -> str | None:
    path = os.path.join(preset, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("model_type")


def own_converter(preset: str):
    """The ``mmgenre.encoders.converters`` module that loads ``preset`` itself (one named after
    its config.json model_type, with a ``load``: mpnet), or None for keras-hub's converters."""
    kind = model_type(preset) if os.path.isdir(preset) else None
    if not kind or importlib.util.find_spec(f"{CONVERTERS}.{kind}") is None:
        return None
    module = importlib.import_module(f"{CONVERTERS}.{kind}")
    return module if hasattr(module, "load") else None


def load_text_encoder(name: str):
    """(backbone, tokenizer) for a text encoder name, folder or keras-hub preset."""
    import keras_hub

    preset = resolve(name, "text")
    converter = own_converter(preset)
    if converter:
        try:
            return converter.load(preset)
        except (OSError, ValueError, KeyError) as err:
            raise EncoderError(f"cannot load text encoder {name!r} from {preset}: {err}") from None
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(preset)
        if os.path.isdir(preset):
            # strip_accents=True matches the original uncased tokenizer (without it 40 of
            # 1,534 sample overviews tokenise differently).
            tokenizer = keras_hub.models.BertTokenizer(
                vocabulary=os.path.join(preset, "vocab.txt"), lowercase=True, strip_accents=True)
        else:
            tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    except (OSError, ValueError) as err:
        raise EncoderError(f"cannot load text encoder {name!r} from {preset}: {err}") from None
    return backbone, tokenizer


def backbone_inputs(backbone, token_ids, padding_mask) -> dict:
    """The inputs ``backbone`` takes (BERT also wants segment ids; MPNet has none)."""
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = token_ids * 0
    return inputs


def encoder_settings(preset: str) -> dict:
    """{"input_scale": [offset, divisor] on 0-255 pixels, "image_size", "batch_norm_epsilon"}."""
    settings = {"input_scale": [127.5, 127.5], "image_size": 224}
    path = os.path.join(preset, "config.json")
    if os.path.isdir(preset) and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            settings.update(json.load(f).get("mmgenre", {}))
    return settings


def load_image_encoder(name: str):
    """(backbone, settings) for an image encoder name, folder or keras-hub preset."""
    import keras_hub

    preset = resolve(name, "image")
    settings = encoder_settings(preset)
    extra = {"batch_norm_epsilon": settings["batch_norm_epsilon"]} if "batch_norm_epsilon" in settings else {}
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, **extra)
    except (OSError, ValueError, KeyError) as err:
        raise EncoderError(f"cannot load image encoder {name!r} from {preset}: {err}") from None
    return backbone, settings


def encoder_identity(name: str) -> str:
    folder = sources.resolve(name, sources.KNOWN[name].kind) if name in sources.KNOWN else name
    prepared = files.read_json(os.path.join(folder, sources.PREPARED)) if os.path.isdir(folder) else None
    if prepared:
        return prepared.get("sha256", "")
    if os.path.isdir(folder):
        return json.dumps(sorted((f, os.path.getsize(os.path.join(folder, f)),
                                  os.path.getmtime(os.path.join(folder, f)))
                                 for f in os.listdir(folder)))
    return folder


_LOADED: dict = {}  # (name, kind, identity) -> (what load_*_encoder returned, traced forward)
KEEP_LOADED = 4  # encoders a process keeps (all-mpnet-base-v2 is the largest, 438 MB)


def loaded_encoder(name: str, kind: str, forward):
    """(load_text_encoder / load_image_encoder output, tf.function of ``forward(backbone)``),
    loaded and traced once per encoder in a process: embedding train, dev and test, and every
    probe of a benchmark, reuse them (tracing EfficientNet-Lite0 took about 2 s a call, loading
    all-mpnet-base-v2 several). Only the embedders use them; models build their own."""
    import tensorflow as tf

    key = (name, kind, encoder_identity(name))
    if key not in _LOADED:
        load = load_text_encoder if kind == "text" else load_image_encoder
        while len(_LOADED) >= KEEP_LOADED:
            _LOADED.pop(next(iter(_LOADED)))
        loaded = load(name)
        _LOADED[key] = (loaded, tf.function(forward(loaded[0]), reduce_retracing=True))
    return _LOADED[key]


def release_loaded_encoders() -> int:
    """Drops the encoders ``loaded_encoder`` keeps; returns how many. A long job calls it once
    its inputs are embedded: later rows read the embedding cache, and all-mpnet-base-v2 alone
    holds about 0.8 GB. Then collects garbage and hands freed heap pages back to the system
    (glibc keeps them otherwise): before the encoder head's whole graph is built this lowered
    its row's peak by 0.27 GB on the large set (2.83 -> 2.56 GB, one process, measured here)."""
    count = len(_LOADED)
    _LOADED.clear()
    gc.collect()  # Keras models of a fit's folds sit in reference cycles
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return count
