"""A pretrained BERT-family encoder (all-MiniLM-L6-v2 by default) as an overview branch.

The model takes raw overview strings: keras-hub's WordPiece tokenizer and a
packer ([CLS] ... [SEP], padded to ``sequence_length``) sit inside it, so the
saved .keras file carries its vocabulary and serves raw text. Pooling follows
the checkpoint (mean over real tokens, L2 normalisation: ``MaskedMeanPooling``).
Frozen by default (``train.cache_features: true`` computes the pooled
embeddings once); phase two fine-tunes the last ``fine_tune_blocks``
transformer layers at ``train.fine_tune_learning_rate``.
"""

from __future__ import annotations

import keras

from mmgenre.models.backbones import text_encoder_backbone
from mmgenre.models.heads import check_rates, classifier
from mmgenre.models.registry import register


def unfreeze_last_layers(model, layers: int):
    """The last ``layers`` transformer layers trainable, the rest frozen; 0 freezes all.

    At build time (``trainable_blocks``) and as phase two (``train.fine_tune_blocks``).
    """
    backbone = model.get_layer("backbone")
    blocks = [layer for layer in backbone.layers if layer.name.startswith("transformer_layer_")]
    if not 0 <= layers <= len(blocks):
        raise ValueError(f"layers to fine-tune must be in [0, {len(blocks)}], got {layers}")
    backbone.trainable = layers > 0
    for layer in backbone.layers:
        layer.trainable = layer in blocks[len(blocks) - layers:]
    return model


@register("text_encoder", modalities=("overview",), fine_tune=unfreeze_last_layers,
          description="pretrained text encoder (all-MiniLM-L6-v2, all-mpnet-base-v2) on raw text, "
                      "frozen or fine-tuned")
def build_text_encoder(num_genres: int, task: str = "multilabel", sequence_length: int = 256,
                       encoder: str = "minilm", trainable_blocks: int = 0, dense_units: int = 256,
                       dropout: float = 0.3):
    """Builds tokenizer + packer + backbone + mean pooling, then the shared head.

    Args:
        num_genres: int. number of genres.
        task: str. "multilabel" or "single".
        sequence_length: int. word pieces per overview, [CLS] and [SEP] included
            (data.sequence_length; all-MiniLM-L6-v2 was trained on 256).
        encoder: str. a known encoder (``mmgenre encoders list``), a Hugging
            Face-format or keras-hub preset folder, or a preset handle.
        trainable_blocks: int. how many of the last transformer blocks (layers) train from
            the start; 0 freezes the encoder. Defaults to 0.
        dense_units: int. width of the "embedding" layer. Defaults to 256.
        dropout: float. dropout before "genres". Defaults to 0.3.

    Returns:
        keras.Model: {"overview": (batch,) strings} -> (batch, num_genres).
    """
    check_rates(dropout=dropout)  # before loading the encoder
    overview = keras.Input(shape=(), dtype="string", name="overview")
    x = text_encoder_backbone(overview, encoder, sequence_length)
    model = classifier({"overview": overview}, x, num_genres, task, dense_units, dropout,
                       name="text_encoder")
    return unfreeze_last_layers(model, trainable_blocks)
