"""ResNet50 from keras.applications as a poster branch (ImageNet, local or no weights).

The backbone is frozen except its last ``trainable_blocks`` stages (BatchNorm
stays frozen: fine-tuning its statistics on ~1,000 posters hurts, as the Keras
transfer-learning guide notes). Inputs are [0, 1] posters like every mmgenre
image model; an ImageNetPreprocess layer inside the model applies ResNet50's own
preprocess_input ("caffe": BGR, mean-subtracted).
"""

from __future__ import annotations

import os
import socket

import keras

from mmgenre.models.heads import classifier
from mmgenre.models.layers import ImageNetPreprocess
from mmgenre.models.registry import register

WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + WEIGHTS_FILE
DOWNLOAD_HOST = "storage.googleapis.com"
STAGES = ("conv5_", "conv4_", "conv3_", "conv2_")  # last stage first


def keras_cache_file(name: str = WEIGHTS_FILE) -> str:
    """Where keras.utils.get_file looks for (and saves) application weights."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", name)


def host_reachable(host: str = DOWNLOAD_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_weights(weights):
    """Returns None, "imagenet" or a local file path; fails at once when offline.

    Raises:
        ValueError naming the exact file to download and where to put it, when
        ImageNet weights are not cached and the download host is unreachable.
    """
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        cached = keras_cache_file()
        if os.path.exists(cached) or host_reachable():
            return "imagenet"
        raise ValueError(
            f"ResNet50 ImageNet weights are not cached and {DOWNLOAD_HOST} is unreachable "
            f"(no network). Download {WEIGHTS_URL} on a machine with network access and place "
            f"it at {cached}, or set model.params.weights to a local weights file, or to none.")
    if not os.path.exists(weights):
        raise ValueError(f"ResNet50 weights file not found: {weights}")
    return weights


def unfreeze_last_blocks(model, blocks: int):
    """Phase two: make the last ``blocks`` stages of the backbone trainable (not BatchNorm)."""
    if not 1 <= blocks <= len(STAGES):
        raise ValueError(f"fine_tune_blocks must be in [1, {len(STAGES)}], got {blocks}")
    backbone = model.get_layer("backbone")
    for layer in backbone.layers:
        if layer.name.startswith(STAGES[:blocks]) and not isinstance(
                layer, keras.layers.BatchNormalization):
            layer.trainable = True
    return model


@register("resnet", modalities=("poster",), description="keras.applications ResNet50 backbone",
          fine_tune=unfreeze_last_blocks)
def build_resnet(num_genres: int, task: str = "multilabel", image_size=(224, 224),
                 weights="imagenet", trainable_blocks: int = 0, dense_units: int = 256,
                 dropout: float = 0.3):
    """Builds ResNet50 (no top, global average pooling), then the shared head.

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" or "single".
        image_size: (height, width), at least (32, 32).
        weights: "imagenet" (downloaded once into the Keras cache), a path to
            a notop weights file, or None/"none" (random init).
        trainable_blocks: int. how many of the last stages (conv5, conv4, ...)
            to fine-tune; 0 freezes the backbone. Defaults to 0.
        dense_units: int. width of the "embedding" layer. Defaults to 256.
        dropout: float. dropout before "genres". Defaults to 0.3.

    Returns:
        keras.Model: {"poster": (batch, height, width, 3) in [0, 1]} -> (batch, num_genres).
    """
    if not 0 <= trainable_blocks <= len(STAGES):
        raise ValueError(f"trainable_blocks must be in [0, {len(STAGES)}], got {trainable_blocks}")
    resolved = resolve_weights(weights)
    local = resolved not in (None, "imagenet")
    backbone = keras.applications.ResNet50(
        include_top=False, weights=None if local else resolved, input_shape=(*image_size, 3),
        pooling="avg", name="backbone")
    if local:
        try:
            backbone.load_weights(resolved)
        except (ValueError, KeyError, OSError) as err:
            raise ValueError(f"{resolved}: not ResNet50 notop weights ({err})") from None
    unfrozen = STAGES[:trainable_blocks]
    for layer in backbone.layers:
        layer.trainable = (layer.name.startswith(unfrozen) and
                           not isinstance(layer, keras.layers.BatchNormalization))
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    x = ImageNetPreprocess(name="imagenet_preprocess")(poster)
    x = backbone(x, training=False)  # BatchNorm in inference mode, frozen or not
    return classifier({"poster": poster}, x, num_genres, task, dense_units, dropout, name="resnet")
