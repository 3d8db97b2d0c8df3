"""Using a finished run folder: evaluate it on any dataset, predict one movie."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from mmgenre import config as config_lib
from mmgenre import runs, tasks
from mmgenre.data import labels as labels_lib
from mmgenre.data import pipeline, prepare
from mmgenre.data.validate import inspect_poster
from mmgenre.evaluation import evaluate
from mmgenre.models import registry, saving


@dataclasses.dataclass
class Run:
    """A trained model with everything needed to feed it and read its output."""

    path: str
    config: config_lib.ExperimentConfig
    model: object
    vocab: labels_lib.GenreVocabulary
    vectorizer: object
    thresholds: np.ndarray | None

    @property
    def spec(self):
        return registry.get(self.config.model.name, self.config.model.params)

    @property
    def modalities(self):
        return self.spec.modalities


def load_run(run_dir: str, allow_external_code: bool = False) -> Run:
    """Loads config, model, genre vocabulary, vectorizer and dev thresholds.

    ``allow_external_code`` permits models holding a SavedModel (TF-Hub) layer,
    whose loading runs that SavedModel's code (Keras safe_mode=False).
    """
    model_path = runs.RunFolder(run_dir).model
    if not os.path.exists(model_path):
        metrics = runs.read_json(runs.RunFolder(run_dir).metrics) or {}
        if "fused_model" in metrics and metrics["fused_model"] is None:  # not one graph
            raise FileNotFoundError(f"{run_dir}: a score-fusion report without a model "
                                    f"({metrics['fused_model_note']})")
        raise FileNotFoundError(f"{run_dir}: no best.keras; is this a finished mmgenre run folder?")
    # Without its completion record a folder may hold a half-trained model and no dev
    # thresholds (predictions would silently use 0.5 everywhere).
    runs.require_complete(run_dir, f"rerun `mmgenre train --config "
                                   f"{runs.RunFolder(run_dir).config} --workdir {run_dir}`")
    cfg = config_lib.load_config(runs.RunFolder(run_dir).config)
    vectorizer_path = runs.RunFolder(run_dir).vocabulary
    vectorizer = pipeline.load_vectorizer(vectorizer_path) if os.path.exists(vectorizer_path) else None
    vocab = labels_lib.GenreVocabulary.from_json(runs.RunFolder(run_dir).genres)
    thresholds = None
    thresholds_path = runs.RunFolder(run_dir).thresholds
    if os.path.exists(thresholds_path):
        with open(thresholds_path, encoding="utf-8") as f:
            saved = json.load(f)
        thresholds = np.array([saved[g] for g in vocab.genres])
    return Run(run_dir, cfg, saving.load_model(model_path, allow_external_code), vocab, vectorizer,
               thresholds)


def evaluate_run(run_dir: str, data_path: str | None = None, split: str = "test",
                 out_dir: str | None = None, bad_input: str | None = None,
                 allow_external_code: bool = False) -> dict:
    """Scores a trained run on ``split`` of any dataset in a supported layout (default: the
    dataset it was trained on, found from any current folder).

    The run's own genre vocabulary, vectorizer and dev-tuned thresholds are
    used unchanged; genres the run never learned are ignored and counted.
    Results go to ``RUN_DIR/eval/<dataset>-<split>/`` unless ``out_dir`` is given.
    """
    run = load_run(run_dir, allow_external_code)
    cfg = run.config
    if bad_input:
        cfg.data.bad_input = bad_input
    data_path = data_path or runs.dataset_path(run_dir, cfg.data.path)
    cfg.data.path = data_path
    cfg.data.limit = None
    prepared = prepare.prepare_data(cfg.data, registry.get(cfg.model.name, cfg.model.params), vocab=run.vocab,
                                    vectorizer=run.vectorizer)
    if prepared.splits[split][0].empty:
        raise ValueError(f"{data_path}: split {split!r} has no usable rows for inputs "
                         f"{list(run.modalities)}")
    name = os.path.basename(os.path.normpath(data_path))
    out_dir = out_dir or runs.RunFolder(run_dir).eval_dir(name, split)
    runs.check_report_dir(out_dir)
    results = evaluate.evaluate_prepared(run.model, cfg, prepared, out_dir, thresholds=run.thresholds
                                        if run.thresholds is not None else 0.5, splits=(split,))
    results["unseen_genres"] = prepared.unseen_genres
    results["out_dir"] = out_dir
    return results


def predict_movie(run: Run, poster: str | None = None, overview: str | None = None):
    """Genre probabilities for one movie, highest first: [(genre, prob, predicted, threshold)];
    predicted by the task's rule (``mmgenre.tasks``), threshold None for single-label runs.

    A unimodal model needs its own input; giving the other is an error so
    nobody believes a text model looked at a poster. A fused model takes either
    or both: an absent input is what it was trained to stand in for (a zero
    poster, an empty overview).
    """
    given = {"poster": poster, "overview": overview}
    fused = run.spec.accepts_missing
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
    on = task.decide(probs[np.newaxis], run.thresholds)[0]
    # Single-label runs predict the top genre: no threshold to show.
    shown = ((run.thresholds if run.thresholds is not None else np.full(len(probs), 0.5))
             if task.uses_thresholds else [None] * len(probs))
    order = np.argsort(-probs)
    return [(run.vocab.genres[i], float(probs[i]), bool(on[i]),
             None if shown[i] is None else float(shown[i])) for i in order]


def attention_words(run: Run, overview: str, top: int = 5):
    """[(word, weight)] the attention layer weighted most, or [] for models without one."""
    from mmgenre.models.bilstm_attention import attention_weights

    if "attention" not in [layer.name for layer in run.model.layers] or run.vectorizer is None:
        return []
    ids = run.vectorizer(tf.constant([overview])).numpy()
    weights = attention_weights(run.model, ids)[0]
    # Token i is the i-th word after TextVectorization's default standardisation
    # (lowercase, punctuation stripped); showing that word keeps out-of-vocabulary
    # words readable instead of "[UNK]".
    words = re.sub(r"[^\w\s]", "", overview.lower()).split()
    order = [i for i in np.argsort(-weights) if ids[0, i] != 0 and i < len(words)][:top]
    return [(words[i], float(weights[i])) for i in order]
