"""A pretrained keras-hub image backbone (EfficientNet-Lite0 by default) as a poster branch.

The backbone comes from ``mmgenre.encoders`` (a known name prepared offline, a
local preset folder, or a keras-hub handle), is frozen by default (with
``train.cache_features: true`` its pooled features are computed once and only
the head trains), and fine-tunes its last ``trainable_blocks`` stages at
``train.fine_tune_learning_rate`` in phase two. Posters arrive in [0, 1] like
every mmgenre image model; a Rescaling layer applies the checkpoint's own input
scaling ((x - 127) / 128 on 0-255 pixels for EfficientNet-Lite0).
"""

from __future__ import annotations

import keras

from mmgenre.models.backbones import image_encoder_backbone
from mmgenre.models.heads import check_rates, classifier
from mmgenre.models.registry import register

STAGES = ("block7", "block6", "block5", "block4", "block3", "block2", "block1")  # last first


def unfreeze_last_blocks(model, blocks: int):
    """The last ``blocks`` stages (and the top conv) trainable, the rest frozen; 0 freezes all.

    At build time (``trainable_blocks``) and as phase two (``train.fine_tune_blocks``).
    """
    if not 0 <= blocks <= len(STAGES):
        raise ValueError(f"blocks to fine-tune must be in [0, {len(STAGES)}], got {blocks}")
    backbone = model.get_layer("backbone")
    backbone.trainable = blocks > 0
    for layer in backbone.layers:
        # BatchNorm stays frozen: its statistics on ~1,000 posters would hurt (Keras guide).
        layer.trainable = (blocks > 0 and (layer.name.startswith(STAGES[:blocks])
                                           or layer.name.startswith("top_"))
                           and not isinstance(layer, keras.layers.BatchNormalization))
    return model


@register("image_encoder", modalities=("poster",), fine_tune=unfreeze_last_blocks,
          description="pretrained keras-hub image backbone (EfficientNet-Lite0), frozen or fine-tuned")
def build_image_encoder(num_genres: int, task: str = "multilabel", image_size=(224, 224),
                        encoder: str = "efficientnet_lite0", trainable_blocks: int = 0,
                        dense_units: int = 256, dropout: float = 0.3):
    """Builds backbone + global average pooling, then the shared head (``heads.classifier``).

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" or "single".
        image_size: (height, width); EfficientNet-Lite0 was trained at 224x224.
        encoder: str. a known encoder (``mmgenre encoders list``), a preset
            folder, or a keras-hub preset handle. Defaults to "efficientnet_lite0".
        trainable_blocks: int. how many of the last stages to train from the
            start; 0 freezes the backbone. Defaults to 0.
        dense_units: int. width of the "embedding" layer. Defaults to 256.
        dropout: float. dropout before "genres". Defaults to 0.3.

    Returns:
        keras.Model: {"poster": (batch, height, width, 3) in [0, 1]} -> (batch, num_genres).
    """
    check_rates(dropout=dropout)  # before loading the encoder
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    x, _ = image_encoder_backbone(poster, encoder)
    model = classifier({"poster": poster}, x, num_genres, task, dense_units, dropout,
                       name="image_encoder")
    return unfreeze_last_blocks(model, trainable_blocks)
