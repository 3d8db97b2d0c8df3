"""Using a finished run folder: evaluate it on any dataset, predict one movie."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from mmgenre import config as config_lib
from mmgenre import decisions, files, runs, tasks
from mmgenre import genres as genres_lib
from mmgenre.data import labels as labels_lib
from mmgenre.data import pipeline, prepare
from mmgenre.data.validate import inspect_poster
from mmgenre.evaluation import evaluate
from mmgenre.models import quantized, registry, saving


@dataclasses.dataclass
class Run:
    """A trained run folder: what it says (config, genres, fitted thresholds) and, once
    loaded (``load_run``), its model and vectorizer.

    thresholds: the run's fitted ``decisions.Thresholds`` (None for single-label runs).
    prior: (n_genres,) the share of the run's train movies carrying each genre, or None.
    """

    path: str
    config: config_lib.ExperimentConfig
    vocab: labels_lib.GenreVocabulary
    thresholds: decisions.Thresholds | None
    prior: np.ndarray | None = None
    model: object = None
    vectorizer: object = None

    @property
    def spec(self):
        return registry.get(self.config.model.name, self.config.model.params)

    @property
    def modalities(self):
        return self.spec.modalities

    @property
    def threshold_values(self) -> np.ndarray:
        """(n_genres,) the thresholds predictions use (0.5 where the run has none)."""
        return (self.thresholds.values if self.thresholds is not None
                else np.full(len(self.vocab), 0.5))


def open_run(run_dir: str) -> Run:
    """Reads a finished run folder without loading its model (no TensorFlow work): every
    refusal a folder can cause comes from here, in a second."""
    folder = runs.RunFolder(run_dir)
    if not os.path.exists(folder.model):
        metrics = files.read_json(folder.metrics) or {}
        if "fused_model" in metrics and metrics["fused_model"] is None:  # not one graph
            raise FileNotFoundError(f"{run_dir}: a score-fusion report without a model "
                                    f"({metrics['fused_model_note']})")
        raise FileNotFoundError(f"{run_dir}: no best.keras; is this a finished mmgenre run folder?")
    # Without its completion record a folder may hold a half-trained model and no fitted
    # thresholds (predictions would silently use 0.5 everywhere).
    runs.require_complete(run_dir, f"rerun `mmgenre train --config {folder.config} --workdir {run_dir}`")
    cfg = config_lib.load_config(folder.config)
    vocab = labels_lib.GenreVocabulary.from_json(folder.genres)
    metrics = files.read_json(folder.metrics) or {}
    thresholds = decisions.Thresholds.from_json(folder.thresholds, vocab.genres, metrics)
    if thresholds is None and tasks.get(cfg.data.task).uses_thresholds:
        raise FileNotFoundError(f"{run_dir}: no {os.path.basename(folder.thresholds)}; a "
                                "multi-label run decides at thresholds fitted in training: retrain it")
    return Run(run_dir, cfg, vocab, thresholds, _train_prior(folder, vocab))


def _train_prior(folder, vocab):
    """(n_genres,) train frequencies of the run's genres (genres.json's train movie count, or
    the validation report's for runs saved before it recorded one), None when unknown."""
    n_train = vocab.train_movies or ((files.read_json(folder.validation) or {})
                                     .get("rows_per_split", {}).get("train"))
    if not n_train:
        return None
    return np.array([vocab.train_counts.get(g, 0) / n_train for g in vocab.genres])


def load_run(run_dir: str, allow_external_code: bool = False) -> Run:
    """``open_run`` plus the model and vectorizer.

    ``allow_external_code`` permits models holding a SavedModel (TF-Hub) layer,
    whose loading runs that SavedModel's code (Keras safe_mode=False).
    """
    return with_model(open_run(run_dir), allow_external_code)


def with_model(run: Run, allow_external_code: bool, prepared=None) -> Run:
    """``run`` with its model and vectorizer loaded; ``prepared`` (data checked by
    ``prepare_for_run``) gets the run's vectorizer, so it feeds the model as trained."""
    folder = runs.RunFolder(run.path)
    vectorizer = (pipeline.load_vectorizer(folder.vocabulary) if os.path.exists(folder.vocabulary)
                  else None)
    if prepared is not None:
        prepared.vectorizer = vectorizer
    model = saving.load_model(folder.model, allow_external_code)
    params = run.spec.params(run.config.model.params)
    if quantized.precision_of(params) == "int8":  # served as fitted: behind its int8 encoders
        quantized.check_int8_encoders((files.read_json(folder.metrics) or {}).get("int8_encoders"),
                                      run.path)
        model = quantized.as_served(model, params)
    return dataclasses.replace(run, model=model, vectorizer=vectorizer)


def prepare_for_run(run: Run, data_path: str, split: str | None = "test", bad_input=None,
                    genre_map=None, require_genres: bool = True):
    """(data config, PreparedData) of ``data_path`` for scoring ``run``: the run's genres
    (spellings mapped, ``genre_map`` first), no fitting, rows lacking one input of a
    two-input model kept. Refuses, before any model loads, data that shares fewer than two
    genres with the run or whose ``split`` has no row with an input the model reads."""
    data_cfg = dataclasses.replace(run.config.data, path=data_path, limit=None)
    if bad_input:
        data_cfg.bad_input = bad_input
    prepared = prepare.prepare_data(data_cfg, run.spec, vocab=run.vocab, require_genres=require_genres,
                                    genre_map=genres_lib.parse_genre_map(genre_map), only_split=split)
    for name in [split] if split else [s for s in prepared.splits if len(prepared.splits[s][0])]:
        if prepared.splits[name][0].empty:
            skipped = prepared.inputs.get("skipped_without_input", 0)
            raise ValueError(f"{data_path}: split {name!r} has no row with an input the model reads "
                             f"({' or '.join(run.modalities)})"
                             + (f"; {skipped} row(s) lack it" if skipped else ""))
    return data_cfg, prepared


def evaluate_run(run_dir: str, data_path: str | None = None, split: str = "test",
                 out_dir: str | None = None, bad_input: str | None = None,
                 allow_external_code: bool = False, genre_map=None) -> dict:
    """Scores a trained run on ``split`` of any dataset in a supported layout (default: the
    dataset it was trained on, found from any current folder); the split may be the only
    one the dataset has.

    Nothing is fitted on the data: the run's genre vocabulary (other spellings mapped onto
    it, ``mmgenre.genres``), vectorizer, thresholds and calibration apply unchanged, and the
    report says where the thresholds came from. Every check the folder and the data's table
    can answer runs before the model loads. Results go to ``RUN_DIR/eval/<dataset>-<split>/``
    unless ``out_dir`` is given.
    """
    run = open_run(run_dir)
    data_path = data_path or runs.dataset_path(run_dir, run.config.data.path)
    name = os.path.basename(os.path.normpath(data_path))
    out_dir = out_dir or runs.RunFolder(run_dir).eval_dir(name, split)
    runs.check_report_dir(out_dir)
    data_cfg, prepared = prepare_for_run(run, data_path, split, bad_input, genre_map)
    run = with_model(run, allow_external_code, prepared)
    cfg = dataclasses.replace(run.config, data=data_cfg)
    results = evaluate.evaluate_prepared(run.model, cfg, prepared, out_dir, run.thresholds,
                                         splits=(split,), prior=run.prior, show_progress=True,
                                         robustness=False)
    results["out_dir"] = out_dir
    return results


def predict_movie(run: Run, poster: str | None = None, overview: str | None = None):
    """Genre probabilities for one movie, highest first: [(genre, prob, predicted, threshold)];
    predicted by the task's rule (``mmgenre.tasks``), threshold None for single-label runs.

    A unimodal model needs its own input; giving the other is an error so
    nobody believes a text model looked at a poster. A model reading both takes
    either or both: an absent input gets its absent signal (a zero poster, an
    empty overview), what fusions are trained to stand in for.
    """
    given = {"poster": poster, "overview": overview}
    fused = len(run.modalities) > 1  # two-input models take either alone, as in evaluate
    for modality in ("poster", "overview"):
        if modality not in run.modalities and given[modality] is not None:
            raise ValueError(f"model {run.config.model.name!r} does not take a {modality}; "
                             f"it takes {list(run.modalities)}")
    for modality in ("poster", "overview"):
        if modality in run.modalities and given[modality] is None and not fused:
            raise ValueError(f"model {run.config.model.name!r} needs --{modality}")
    if poster is None and overview is None:
        raise ValueError(f"give --poster and/or --overview (model {run.config.model.name!r} "
                         f"takes {list(run.modalities)})")
    size = tuple(run.config.data.image_size)
    inputs = {}
    if "poster" in run.modalities:
        if poster is not None:
            problem, _ = inspect_poster(poster, run.config.data.max_image_pixels)
            if problem:
                raise ValueError(f"{poster}: cannot use this poster ({problem})")
            image = pipeline.read_poster(poster, size)
        else:
            image = tf.zeros((*size, 3), tf.uint8)  # absent: the fused model's stand-in
        inputs["poster"] = pipeline.to_unit_range(image)[tf.newaxis]
    if "overview" in run.modalities:
        if overview is not None and not overview.strip():
            raise ValueError("the overview is empty")
        text = tf.constant([overview or ""])
        inputs["overview"] = text if prepare.takes_raw_text(run.model) else run.vectorizer(text)
    # predict_on_batch runs the compiled predict function without building a dataset
    # per call (model.predict did, about 140 ms per movie on 2 CPU cores); an eager
    # model(...) call was slower still for the LSTMs (1.1 s: every time step eager).
    probs = np.asarray(run.model.predict_on_batch(inputs))[0]
    task = tasks.get(run.config.data.task)
    on = task.decide(probs[np.newaxis], run.threshold_values)[0]
    # Single-label runs predict the top genre: no threshold to show.
    shown = run.threshold_values if task.uses_thresholds else [None] * len(probs)
    order = np.argsort(-probs)
    return [(run.vocab.genres[i], float(probs[i]), bool(on[i]),
             None if shown[i] is None else float(shown[i])) for i in order]


def attention_words(run: Run, overview: str, top: int = 5):
    """[(word, weight)] the attention layer weighted most, or [] for models without one."""
    from mmgenre.models.bilstm_attention import attention_weights

    layers = getattr(run.model, "layers", [])  # an Int8Pipeline has none: no attention either
    if "attention" not in [layer.name for layer in layers] or run.vectorizer is None:
        return []
    ids = run.vectorizer(tf.constant([overview])).numpy()
    weights = attention_weights(run.model, ids)[0]
    # Token i is the i-th word after TextVectorization's default standardisation
    # (lowercase, punctuation stripped); showing that word keeps out-of-vocabulary
    # words readable instead of "[UNK]".
    words = re.sub(r"[^\w\s]", "", overview.lower()).split()
    order = [i for i in np.argsort(-weights) if ids[0, i] != 0 and i < len(words)][:top]
    return [(words[i], float(weights[i])) for i in order]


def prediction_text(ranked: list, words: list, top: int, as_json: bool = False) -> str:
    """What ``mmgenre predict`` prints for one movie: every predicted genre, and the next most
    probable up to ``top``, with probability and threshold (JSON with ``as_json``)."""
    shown = [r for i, r in enumerate(ranked) if r[2] or i < top]
    if as_json:
        return json.dumps({"genres": [{"genre": g, "probability": p, "predicted": on, "threshold": t}
                                      for g, p, on, t in shown],
                           "attention": [{"word": w, "weight": a} for w, a in words]})
    lines = ["predicted genres: " + (", ".join(g for g, _, on, _ in ranked if on)
                                     or "(none above threshold)"),
             f"    {'genre':<20} {'prob':>8} {'threshold':>9}"]
    for genre, prob, on, threshold in shown:
        p, t = _distinct(prob, threshold)
        lines.append(f"  {'*' if on else ' '} {genre:<20} {p:>8} {t:>9}")
    if words:
        lines.append("most attended words: " + ", ".join(f"{w} ({a:.2f})" for w, a in words))
    return "\n".join(lines)


def _distinct(prob: float, threshold):
    """prob and threshold as text with enough digits that a reader sees which is larger
    (0.5049 against 0.5051 both round to 0.505); "top genre" for single-label runs."""
    if threshold is None:
        return f"{prob:.3f}", "top genre"
    digits = next((d for d in range(3, 8) if f"{prob:.{d}f}" != f"{threshold:.{d}f}"), 7)
    return f"{prob:.{digits}f}", f"{threshold:.{digits}f}"
