"""A compact ResNet trained from scratch: ResNet-style results without pretrained weights."""

from __future__ import annotations

import keras

from mmgenre.models.heads import classifier
from mmgenre.models.registry import register


def residual_block(x, filters: int, stride: int, name: str):
    """Two 3x3 conv + BN; a 1x1 projection on the shortcut when the shape changes (He et al. 2016)."""
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@register("compact_resnet", modalities=("poster",), description="small ResNet from scratch (CPU speed)")
def build_compact_resnet(num_genres: int, task: str = "multilabel", image_size=(128, 128),
                         widths=(32, 64, 128), blocks_per_stage: int = 1, dense_units: int = 128,
                         dropout: float = 0.3):
    """Builds a compact ResNet.

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" or "single".
        image_size: (height, width).
        widths: list of int. filters per stage; each stage after the first halves the resolution.
        blocks_per_stage: int. residual blocks per stage. Defaults to 1.
        dense_units: int. width of the "embedding" layer. Defaults to 128.
        dropout: float. dropout before "genres". Defaults to 0.3.

    Returns:
        keras.Model: {"poster": (batch, height, width, 3) in [0, 1]} -> (batch, num_genres).
    """
    if not widths or blocks_per_stage < 1:
        raise ValueError(f"need at least one stage and block, got widths={widths!r}, "
                         f"blocks_per_stage={blocks_per_stage}")
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    x = keras.layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False, name="stem_conv")(poster)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for s, filters in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            x = residual_block(x, filters, stride, name=f"stage{s + 1}_block{b + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return classifier({"poster": poster}, x, num_genres, task, dense_units, dropout,
                      name="compact_resnet")
