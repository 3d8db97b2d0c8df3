"""Start a model from another trained model's layers (transfer, pretraining, fusion branches).

Layers are matched by name, which every builder sets explicitly, so a poster
branch pretrained on posters-movielens (18 MovieLens genres) initialises the
same branch for the paired set's 16 TMDB genres: every layer but the genre layer
("genres") fits. The layers of a nested head model (``heads.HEAD``) count by their
own names, so run folders saved before the head was its own model still match.
"""

from __future__ import annotations

import os

import keras

from mmgenre.models.heads import HEAD
from mmgenre.runs import RunFolder, require_complete

GENRES = "genres"  # the genre layer: its genres differ between datasets


def resolve_source(source: str) -> str:
    """The .keras file behind ``source``: a run folder's best.keras, or the file itself."""
    if os.path.isdir(source):  # a run still training has a best.keras that is not its result
        require_complete(source, "finish it first (rerun its `mmgenre train` command)")
    path = RunFolder(source).model if os.path.isdir(source) else source
    if not os.path.exists(path):
        raise ValueError(f"pretrained weights not found: {path} (a run folder with best.keras, "
                         "or a .keras file)")
    return path


def named_layers(model) -> dict:
    """{name: layer} of ``model``'s layers, with the nested head's layers in place of the head."""
    layers = {}
    for layer in model.layers:
        if layer.name == HEAD and isinstance(layer, keras.Model):
            layers.update((inner.name, inner) for inner in layer.layers
                          if not isinstance(inner, keras.layers.InputLayer))
        else:
            layers[layer.name] = layer
    return layers


def load_pretrained(model, source: str, frozen: bool = False, skip=(GENRES,),
                    allow_external_code: bool = False) -> list:
    """Copies the weights of every layer of ``source`` whose name is a layer of ``model``.

    Args:
        model: keras.Model to initialise in place.
        source: a run folder (its best.keras) or a .keras file.
        frozen: set the copied layers' ``trainable`` to False.
        skip: layer names never copied (the genre head: its genres differ).
        allow_external_code: load ``source`` with Keras safe mode off (user's choice).

    Returns:
        list of str: the names of the copied layers.

    Raises:
        ValueError naming the file and layer when a shared layer's weights have
        other shapes, or when no layer is shared at all.
    """
    from mmgenre.models.saving import load_model

    path = resolve_source(source)
    trained = named_layers(load_model(path, allow_external_code))
    copied = []
    for layer in named_layers(model).values():
        if layer.name in skip or not layer.weights or layer.name not in trained:
            continue
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(w.shape) for w in trained[layer.name].weights]
        if want != have:
            raise ValueError(
                f"{path}: layer {layer.name!r} does not fit model {model.name!r} (weights {have} "
                f"vs {want}); train the source with the same model name and params")
        layer.set_weights(trained[layer.name].get_weights())
        if frozen:
            layer.trainable = False
        copied.append(layer.name)
    if not copied:
        raise ValueError(f"{path}: no layer of model {model.name!r} is in the saved model "
                         f"(saved layers: {sorted(trained)[:8]}...); is it the same architecture?")
    return copied
