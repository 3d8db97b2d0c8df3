"""Score fusion as a model: trained runs' graphs side by side, their scores fused by a layer.

    poster ───┬─> member 0 (a run's best.keras) ─> (batch, genres) ─┐
    overview ─┴─> member 1 ...                  ─> (batch, genres) ─┴─> ScoreFusion "fusion"
                                                                        ─> PlattCalibration "genres"

``mmgenre score-fusion RUN... --out DIR`` chooses the member weights
(``mmgenre.evaluation.score_fusion``), sets them with each member's dev logit
statistics into the ``ScoreFusion`` layer, fits the Platt calibration on the
split the weights were chosen on, and saves this graph: the fused folder is a
run that ``evaluate``, ``predict`` and ``export`` take like any other, and its
scores are probabilities again (z-scored logits rank well but are not: averaged
into a sigmoid, top-1 accuracy fell from 0.88 to 0.56, results/encoders.md).

Members are fed the same raw inputs, so they must agree on them: overviews as
strings and posters at one size. Models with their tokenizer or TF-IDF inside
(probes, encoder heads, pretrained-encoder models) take strings as they are; a
model fed token ids by the data pipeline (the study's lstm) gets its run's
vectorizer in front (``member_model``), as its export does.
"""

from __future__ import annotations

import os

import keras

from mmgenre.models.layers import PlattCalibration, ScoreFusion
from mmgenre.models.registry import register


def member_model(run_dir: str):
    """The best.keras of ``run_dir`` fed raw inputs: a model taking overview token ids gets
    its run's fitted vectorizer (vectorizer.json) in front, so it reads strings (batch,)."""
    from mmgenre.models.saving import load_model
    from mmgenre.runs import RunFolder

    model = load_model(RunFolder(run_dir).model)
    inputs = model.input if isinstance(model.input, dict) else {}
    overview = inputs.get("overview")
    if overview is None or overview.dtype == "string" or not os.path.exists(
            RunFolder(run_dir).vocabulary):
        return model
    from mmgenre.data.pipeline import load_vectorizer

    feeds = {name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name)
             for name, t in inputs.items() if name != "overview"}
    feeds["overview"] = keras.Input(shape=(), dtype="string", name="overview")
    token_ids = load_vectorizer(RunFolder(run_dir).vocabulary)(feeds["overview"])
    return keras.Model(feeds, model({**feeds, "overview": token_ids}), name=model.name)


def member_problem(model) -> str | None:
    """Why ``model`` (a loaded member) cannot be fed raw inputs inside a fused graph, or None."""
    inputs = model.input if isinstance(model.input, dict) else {}
    if not inputs:
        return f"model {model.name!r} does not take a dict of named inputs"
    overview = inputs.get("overview")
    if overview is not None and overview.dtype != "string":
        return (f"model {model.name!r} takes overviews as token ids and its run has no "
                "vectorizer.json to make them from text")
    unknown = sorted(set(inputs) - {"poster", "overview"})
    return f"model {model.name!r} takes inputs {unknown}" if unknown else None


def _modalities(params: dict) -> tuple:
    return tuple(params.get("inputs") or ())


@register("score_fusion", modalities=_modalities, fitted_by="score_fusion",
          description="trained runs' scores fused in one graph (made by mmgenre score-fusion)")
def build_score_fusion(num_genres: int, image_size=(224, 224), members=(), inputs=(),
                       space: str = "logit_z", weighting: str = "auto"):
    """Builds the fused graph over member models.

    Args:
        num_genres: int. number of genres every member predicts.
        image_size: (height, width) of the poster input, the members' own.
        members: list of keras.Model, or of run folders (``member_model``: best.keras loaded
            in safe mode, fed raw inputs); the runs of non-zero weight.
        inputs: list of str. the modalities the members read ("poster", "overview").
        space: "logit_z" or "probability" (``ScoreFusion``).
        weighting: how the weights were chosen (recorded; the weights live in the layer).

    Returns:
        keras.Model: {"poster": (batch, height, width, 3) in [0, 1], "overview": (batch,)
        strings} (those in ``inputs``) -> (batch, num_genres) probabilities, with the
        members as nested models "member_<i>", then layers "fusion" and "genres".
    """
    if not members:
        raise ValueError("score fusion needs at least one member model")
    models = [m if isinstance(m, keras.Model) else member_model(m) for m in members]
    problems = [p for p in map(member_problem, models) if p]
    if problems:
        raise ValueError(f"cannot fuse these models in one graph: {problems[0]}")
    feeds = {"poster": keras.Input(shape=(*image_size, 3), name="poster"),
             "overview": keras.Input(shape=(), dtype="string", name="overview")}
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    scores = []
    for i, model in enumerate(models):
        missing = sorted(set(model.input) - set(feeds))
        if missing:
            raise ValueError(f"member {i} ({model.name!r}) reads {missing}, not in inputs {list(inputs)}")
        # A fresh name per member: two probes are both "linear_probe" inside.
        member = keras.Model(model.input, model.output, name=f"member_{i}")
        scores.append(member({k: feeds[k] for k in model.input}))
    fused = ScoreFusion(len(models), num_genres, space, name="fusion")(scores)
    return keras.Model(feeds, PlattCalibration(num_genres, name="genres")(fused),
                       name="score_fusion")
