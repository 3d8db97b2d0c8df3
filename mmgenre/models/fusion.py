"""Poster + overview fusion: any registered image branch with any text branch.

Two learned fusions share one builder (``method`` picks one from ``FUSIONS``):

* "concat": late concatenation of the branch embeddings, then Dense layers.
* "gmu": the gated multimodal unit of Arevalo et al. 2017 (the MM-IMDb paper);
  the layer "gmu" also outputs its gate z, the per-unit weight of the poster.

Score-level fusion (a weighted average of two trained unimodal models'
probabilities) needs no new model: see ``mmgenre.evaluation.score_fusion``.

Missing modalities: each branch embedding passes through a MissingModality
layer, which swaps in a learned stand-in vector when the input is absent (an
all-zero poster, an empty overview) and, with ``modality_dropout``, drops
present inputs during training so the model learns to use either alone.
"""

from __future__ import annotations

import keras

from mmgenre.models import registry
from mmgenre.models.heads import check_rates, embedding_output, genre_head
from mmgenre.models.layers import GatedMultimodalUnit, MissingModality
from mmgenre.models.weights import load_pretrained


def concat_fusion(image, text, units):
    """(batch, d_v), (batch, d_t) -> (batch, units) via concatenation + Dense."""
    x = keras.layers.Concatenate(name="concat")([image, text])
    return keras.layers.Dense(units, activation="relu", name="embedding")(x)


def gmu_fusion(image, text, units):
    """(batch, d_v), (batch, d_t) -> (batch, units) via the gated multimodal unit."""
    h, _ = GatedMultimodalUnit(units, name="gmu")([image, text])
    return keras.layers.Identity(name="embedding")(h)


FUSIONS = {"concat": concat_fusion, "gmu": gmu_fusion}


def _branch(kind, name, params, weights, frozen, data_args, out_name):
    spec = registry.get(name)
    if spec.modalities != (kind,):
        raise ValueError(
            f"fusion {out_name} must be a {kind}-only model; {name!r} takes "
            f"{list(spec.modalities)} (image branches: "
            f"{[n for n in registry.names() if registry.get(n).modalities == ('poster',)]}, "
            f"text branches: "
            f"{[n for n in registry.names() if registry.get(n).modalities == ('overview',)]})")
    model = registry.build_model(name, params or {}, **data_args)
    if weights:
        load_pretrained(model, weights)
    encoder = keras.Model(model.inputs, embedding_output(model), name=out_name)
    encoder.trainable = not frozen
    return encoder


@registry.register("fusion", modalities=("poster", "overview"), accepts_missing=True,
                   description="image branch + text branch, concat or GMU fusion")
def build_fusion(num_genres: int, task: str = "multilabel", image_size=(128, 128),
                 vocab_size: int = 10000, sequence_length: int = 200, image_branch: str = "cnn",
                 text_branch: str = "lstm", method: str = "concat", image_params=None,
                 text_params=None, fusion_units: int = 128, dropout: float = 0.3,
                 modality_dropout: float = 0.0, image_weights=None, text_weights=None,
                 freeze_branches: bool = False, freeze_image: bool = False):
    """Builds a fused poster + overview model.

    Args:
        num_genres, task, image_size, vocab_size, sequence_length: from the data.
        image_branch: str. registered poster model ("cnn", "compact_resnet", ...).
        text_branch: str. registered overview model ("lstm", "bilstm_attention", ...).
        method: str. "concat" or "gmu".
        image_params / text_params: dict. hyperparameters of each branch.
        fusion_units: int. width of the fused "embedding". Defaults to 128.
        dropout: float. dropout before "genres". Defaults to 0.3.
        modality_dropout: float. training-time probability of dropping each
            modality (replaced by its learned stand-in). Defaults to 0.
        image_weights / text_weights: str. a trained unimodal run folder (or
            .keras file) to start the branch from, matched layer by layer, so a
            branch trained on other genres fits (mmgenre.models.weights); None
            trains from scratch.
        freeze_branches: bool. keep both branches' weights fixed. Defaults to False.
        freeze_image: bool. keep only the image branch fixed (a pretrained poster
            branch beside a text branch that still learns). Defaults to False.

    Returns:
        keras.Model: {"poster": (batch, h, w, 3), "overview": (batch, seq_len)} ->
        (batch, num_genres). Either input may be absent (zeros).
    """
    if method not in FUSIONS:
        raise ValueError(f"fusion method must be one of {sorted(FUSIONS)}, got {method!r}")
    check_rates(dropout=dropout)
    data_args = dict(num_genres=num_genres, task=task, image_size=image_size,
                     vocab_size=vocab_size, sequence_length=sequence_length)
    image_encoder = _branch("poster", image_branch, image_params, image_weights,
                            freeze_branches or freeze_image, data_args, "image_branch")
    text_encoder = _branch("overview", text_branch, text_params, text_weights, freeze_branches,
                           data_args, "text_branch")
    # Inputs mirror each branch's own (token ids, or raw strings for hub text encoders).
    poster = keras.Input(shape=(*image_size, 3), name="poster")
    text_input = text_encoder.inputs[0]
    overview = keras.Input(shape=text_input.shape[1:], dtype=text_input.dtype, name="overview")
    image = MissingModality(modality_dropout, name="poster_or_stand_in")(
        [image_encoder({"poster": poster}), poster])
    text = MissingModality(modality_dropout, name="overview_or_stand_in")(
        [text_encoder({"overview": overview}), overview])
    x = FUSIONS[method](image, text, fusion_units)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model({"poster": poster, "overview": overview}, genre_head(x, num_genres, task),
                       name=f"fusion_{method}")
