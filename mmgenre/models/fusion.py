"""Poster + overview fusion: any registered image branch with any text branch.

    poster ───> image branch backbone ─> "poster_features" ──┐
           └──> Presence ────────────> "poster_present" ─────┤  "head": each branch's Dense
    overview ─> text branch backbone ──> "overview_features" ─┤  "embedding" -> MissingModality
           └──> Presence ────────────> "overview_present" ───┘  -> concat | GMU -> Dropout -> "genres"

Two learned fusions share one builder (``method`` picks one from ``FUSIONS``):

* "concat": late concatenation of the branch embeddings, then Dense layers.
* "gmu": the gated multimodal unit of Arevalo et al. 2017 (the MM-IMDb paper);
  the layer "gmu" also outputs its gate z, the per-unit weight of the poster.

Each branch is a registered family split at its backbone (``heads.backbone_and_head``):
the backbones and the presence flags are the fusion's backbone, everything trained after
them is its head model, so with frozen encoder branches ``train.cache_features`` runs
the encoders once and fits only the head. Score-level fusion (a weighted average of
trained runs' scores) needs no new model: see ``mmgenre.evaluation.score_fusion``.

Missing modalities: each branch embedding passes through a MissingModality
layer, which swaps in a learned stand-in vector when the input is absent (an
all-zero poster, an empty overview) and, with ``modality_dropout``, drops
present inputs during training so the model learns to use either alone.
"""

from __future__ import annotations

import keras

from mmgenre.models import registry
from mmgenre.models.heads import HEAD, backbone_and_head, check_rates, embedding_layer, genre_head
from mmgenre.models.layers import GatedMultimodalUnit, MissingModality, Presence
from mmgenre.models.weights import load_pretrained

MODALITIES = {"poster": "image", "overview": "text"}


def concat_fusion(image, text, units):
    """(batch, d_v), (batch, d_t) -> (batch, units) via concatenation + Dense."""
    x = keras.layers.Concatenate(name="concat")([image, text])
    return keras.layers.Dense(units, activation="relu", name="embedding")(x)


def gmu_fusion(image, text, units):
    """(batch, d_v), (batch, d_t) -> (batch, units) via the gated multimodal unit."""
    h, _ = GatedMultimodalUnit(units, name="gmu")([image, text])
    return keras.layers.Identity(name="embedding")(h)


FUSIONS = {"concat": concat_fusion, "gmu": gmu_fusion}


def _branch(modality, name, params, weights, frozen, data_args):
    """(backbone model "<kind>_branch", its Dense "embedding" renamed "<kind>_embedding" or
    None where the backbone's output is the embedding) of registered family ``name``."""
    kind = MODALITIES[modality]
    spec = registry.get(name)
    if spec.modalities != (modality,):
        raise ValueError(
            f"fusion {kind}_branch must be a {modality}-only model; {name!r} takes "
            f"{list(spec.modalities)} (image branches: "
            f"{[n for n in registry.names() if registry.get(n).modalities == ('poster',)]}, "
            f"text branches: "
            f"{[n for n in registry.names() if registry.get(n).modalities == ('overview',)]})")
    model = registry.build_model(name, params or {}, **data_args)
    if weights:
        load_pretrained(model, weights)
    backbone, head = backbone_and_head(model)
    backbone.name = f"{kind}_branch"
    embedding = embedding_layer(head)
    if embedding is not None:
        embedding.name = f"{kind}_embedding"  # two branches' "embedding" in one head
    for layer in (backbone, embedding):
        if frozen and layer is not None:
            layer.trainable = False
    return backbone, embedding


def fusion_head(dims: dict, embeddings: dict, num_genres: int, task: str, method: str,
                units: int, dropout: float, modality_dropout: float):
    """The fusion's head model: {"<modality>_features": (batch, d), "<modality>_present":
    (batch, 1)} -> (batch, num_genres), through each branch's embedding (``embeddings``:
    modality -> Dense or None), its MissingModality, the fusion ``method`` and "genres"."""
    inputs = {name: keras.Input(shape=(dim,), name=name) for name, dim in dims.items()}
    branches = {}
    for modality in MODALITIES:
        x = inputs[f"{modality}_features"]
        if embeddings[modality] is not None:
            x = embeddings[modality](x)
        branches[modality] = MissingModality(modality_dropout, name=f"{modality}_or_stand_in")(
            [x, inputs[f"{modality}_present"]])
    x = FUSIONS[method](branches["poster"], branches["overview"], units)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, genre_head(x, num_genres, task), name=HEAD)


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
    branches = {
        "poster": _branch("poster", image_branch, image_params, image_weights,
                          freeze_branches or freeze_image, data_args),
        "overview": _branch("overview", text_branch, text_params, text_weights, freeze_branches,
                            data_args)}
    # Inputs mirror each branch's own (token ids, or raw strings for text encoders).
    inputs = {m: keras.Input(shape=b.inputs[0].shape[1:], dtype=b.inputs[0].dtype, name=m)
              for m, (b, _) in branches.items()}
    features = {}
    for modality, (backbone, _) in branches.items():
        features[f"{modality}_features"] = keras.layers.Identity(name=f"{modality}_features")(
            backbone({modality: inputs[modality]}))
        features[f"{modality}_present"] = Presence(name=f"{modality}_present")(inputs[modality])
    head = fusion_head({k: int(v.shape[-1]) for k, v in features.items()},
                       {m: e for m, (_, e) in branches.items()}, num_genres, task, method,
                       fusion_units, dropout, modality_dropout)
    return keras.Model(inputs, head(features), name=f"fusion_{method}")


def gmu_gate(model):
    """keras.Model: a GMU fusion's inputs -> (batch, units) gate z (the poster's weight per
    unit), or None for other models."""
    try:
        backbone, head = backbone_and_head(model)
    except ValueError:
        return None
    if "gmu" not in [layer.name for layer in head.layers]:
        return None
    gate = keras.Model(head.input, head.get_layer("gmu").output[1])
    return keras.Model(model.inputs, gate(backbone.output))
