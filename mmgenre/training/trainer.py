"""train_and_evaluate(config, workdir): data -> model -> fit -> evaluation, in a run folder.

The trainer only orchestrates: data preparation lives in ``mmgenre.data.prepare``,
a training phase in ``mmgenre.training.fit``, scoring and reports in
``mmgenre.evaluation.evaluate``, and the run folder's rules (layout, atomic
writes, lock, completion record, data fingerprint) in ``mmgenre.runs``.

Rerunning the same config in the same folder resumes an interrupted run where
it stopped (BackupAndRestore), re-evaluates a trained one whose evaluation did
not finish, and returns the stored metrics of a finished one (``complete.json``
is written last). A finished run whose config differs only in its
``evaluation`` section is re-scored from its best.keras, not retrained. A start
that failed before training left nothing to resume, so a corrected config
replaces it.
"""

from __future__ import annotations

import os
import sys
import time

import keras
import numpy as np

from mmgenre import config as config_lib
from mmgenre import files, runs
from mmgenre.data import pipeline
from mmgenre.data.prepare import prepare_data
from mmgenre.evaluation import plots
from mmgenre.evaluation.evaluate import evaluate_prepared, predict_splits, report_probabilities
from mmgenre.models import registry, weights
from mmgenre.models.probe import check_probe_args
from mmgenre.models.quantized import as_served, int8_encoders
from mmgenre.models.saving import load_model
from mmgenre.progress import timed
from mmgenre.training import cached_head, distributed, fit, graph_check, solve
from mmgenre.training import thresholds as thresholds_lib

# How a model over frozen backbones (registry ``fitted_by``) gets its head from cached features:
# fitter(model, params, prepared, cfg) -> (dev/test probabilities, out-of-fold train
# probabilities, facts for metrics.json).
CACHED_FEATURE_FITTERS = {"linear_solver": solve.fit_linear_probe,
                          "cached_features": cached_head.fit_encoder_head}
# metrics.json keys the report writes (the rest are facts of the fit, kept by a re-score).
REPORT_KEYS = ("model", "name", "genres", "task", "data_fingerprint", "threshold_rule",
               "threshold_split", "thresholds_fitted", "splits", "missing_modality",
               "genres_without_positives")


def _check_run_dir(run_dir, cfg):
    """Refuses to mix two configs in one folder that holds training progress.

    Returns "new", "resume", "finished" or "rescore" (finished; only the
    ``evaluation`` section differs: it changes how a trained model is scored,
    not the model).
    """
    saved = runs.RunFolder(run_dir).config
    if not os.path.exists(saved):
        return "new"
    try:
        previous = config_lib.load_config(saved).to_dict()
    except config_lib.ConfigError:
        previous = None
    current = cfg.to_dict()
    if previous != current:
        if not runs.has_progress(run_dir):
            return "new"  # a start that failed before training: nothing to keep
        if previous is not None and ({**previous, "evaluation": None} == {**current, "evaluation": None}) \
                and runs.is_complete(run_dir):
            return "rescore"
        raise runs.RunFolderError(
            f"{run_dir} holds a run with a different config ({saved}); "
            "use another workdir or delete the folder")
    return "finished" if runs.is_complete(run_dir) else "resume"


def train_and_evaluate(cfg: config_lib.ExperimentConfig, workdir: str | None = None,
                       callbacks=(), verbose=None, allow_external_code: bool = False) -> dict:
    """Trains ``cfg``'s model, evaluates it on dev and test, writes the run folder.

    Args:
        cfg: the experiment.
        workdir: the run folder (default ``cfg.run_dir``).
        callbacks: extra Keras callbacks for every phase.
        allow_external_code: load the run's own .keras files with Keras safe mode
            off (models holding a TFSMLayer); only the user may say so.

    Returns the metrics dict also written to ``metrics.json``.
    """
    run_dir = workdir or cfg.run_dir
    spec = registry.check_params(cfg.model.name, cfg.model.params).check_trainable()
    if cfg.evaluation.threshold_split == "train_oof" and not spec.fitting.out_of_fold:
        raise config_lib.ConfigError(
            f"evaluation.threshold_split 'train_oof' needs out-of-fold train probabilities, which "
            f"model {cfg.model.name!r} does not make; use 'dev' (or linear_probe, encoder_head)")
    runs.check_report_dir(run_dir)  # a folder of the user's files is not a run folder
    with runs.locked(run_dir):
        state = _check_run_dir(run_dir, cfg)
        if state == "finished":
            print(f"{run_dir} is already finished; returning its metrics.json")
            return files.read_json(runs.RunFolder(run_dir).metrics)
        if state == "rescore":
            return _rescore(cfg, spec, run_dir, allow_external_code)
        return _train(cfg, spec, run_dir, callbacks, verbose, allow_external_code)


def _prepare_run_data(cfg, spec, run_dir):
    """PreparedData for ``cfg``, checked against the folder's fingerprint; writes what a
    later evaluate or predict needs (validation report, genres, vectorizer)."""
    prepared = prepare_data(cfg.data, spec)
    runs.check_fingerprint(run_dir, prepared.fingerprint())
    files.write_json(runs.RunFolder(run_dir).validation, {
        **prepared.report.as_dict(),
        "skipped_without_kept_genre": prepared.skipped_unlabelled,
        "unseen_genres_outside_train": prepared.unseen_genres,
        "rows_per_split": {s: len(r) for s, (r, _) in prepared.splits.items()}})
    prepared.vocab.to_json(runs.RunFolder(run_dir).genres)
    if prepared.vectorizer is not None:
        pipeline.save_vectorizer(prepared.vectorizer, runs.RunFolder(run_dir).vocabulary)
    return prepared


def _train(cfg, spec, run_dir, callbacks, verbose, allow_external_code):
    # First: MultiWorkerMirroredStrategy must exist before any TensorFlow op runs.
    strategy = distributed.make_strategy(cfg.train.strategy)
    config_lib.save_config(cfg, runs.RunFolder(run_dir).config)
    keras.utils.set_random_seed(cfg.train.seed)

    prepared = _prepare_run_data(cfg, spec, run_dir)
    if spec.fitting.cached_features:
        return _fit_on_cached_features(cfg, spec, prepared, run_dir)
    with strategy.scope():
        model = fit.build_for_data(cfg, prepared)
        if cfg.train.init_from:
            copied = weights.load_pretrained(model, cfg.train.init_from, frozen=cfg.train.init_frozen,
                                             allow_external_code=allow_external_code)
            print(f"initialised {len(copied)} layers from {cfg.train.init_from}"
                  f"{' (frozen)' if cfg.train.init_frozen else ''}")
        model = fit.compile_model(model, cfg, len(prepared.vocab), prepared=prepared)
    started = time.time()
    best_path = runs.RunFolder(run_dir).model
    phase_one_done = runs.RunFolder(run_dir).phase_one_done
    if not os.path.exists(phase_one_done):
        if cfg.train.strategy == "multiworker":
            fit.fit_multiworker(model, strategy, cfg, prepared, run_dir)
        else:
            fit.fit_phase(model, cfg, prepared, run_dir, "first", cfg.train.epochs, callbacks,
                          verbose, cache=cfg.train.cache_features)
        if not os.path.exists(best_path):
            # Every epoch had a NaN monitor value (finite loss): keep the last weights, say so.
            print(f"warning: {cfg.monitor()} never improved; saving the last epoch's model",
                  file=sys.stderr)
            files.save_model(model, best_path)
        files.write_text(phase_one_done, "")
    if cfg.train.fine_tune_epochs:
        # Phase two (fine-tuning): unfreeze the last blocks, train on posters at a lower rate.
        if spec.fine_tune is None:
            raise config_lib.ConfigError(f"model {cfg.model.name!r} has no fine-tuning phase; "
                                         "set train.fine_tune_epochs: 0")
        model = load_model(best_path, allow_external_code)
        spec.fine_tune(model, cfg.train.fine_tune_blocks)
        fit.compile_model(model, cfg, len(prepared.vocab), cfg.train.fine_tune_learning_rate,
                          prepared=prepared)
        history = runs.read_history(run_dir)
        done = int(history["epoch"].max()) + 1 if "epoch" in history and len(history) else 0
        fit.fit_phase(model, cfg, prepared, run_dir, "fine_tune",
                      done + cfg.train.fine_tune_epochs, callbacks, verbose, cache=False,
                      initial_epoch=done)
    model = load_model(best_path, allow_external_code)
    plots.training_curves(runs.read_history(run_dir), runs.RunFolder(run_dir).training_curves,
                          cfg.name)
    probs = predict_splits(model, cfg.data, prepared, ("dev", "test"))
    fitted = thresholds_lib.fit_and_save(cfg.evaluation, cfg.data.task, prepared, probs, None, run_dir)
    return evaluate_prepared(model, cfg, prepared, run_dir, fitted, probs=probs,
                             extra={"params": int(model.count_params()),
                                    "train_seconds": round(time.time() - started, 1)})


def _fit_on_cached_features(cfg, spec, prepared, run_dir) -> dict:
    """A model over frozen backbones: its head fitted on cached features in seconds
    (``CACHED_FEATURE_FITTERS``), checked against the whole graph, saved as the whole
    graph, scored."""
    started = time.time()
    params = spec.params(cfg.model.params)
    # The builder runs the same check, but only once the head is fitted: a single-label config
    # was refused after every embedding and the solve (test_probe's refusal: 4.05 s, now 0.33 s).
    check_probe_args(cfg.data.task, params["features"], params["calibration"], params["folds"],
                     params["precision"])
    head_first = fit.HeadFirst(cfg, prepared, params)  # the encoders' weights after the fit
    probs, train_oof, extra = CACHED_FEATURE_FITTERS[spec.fitted_by](head_first, params, prepared, cfg)
    model = head_first.whole_graph()
    # At int8 the check runs the int8 pipeline the run is served with (models.quantized).
    extra["graph_check_max_diff"] = graph_check.check_graph(as_served(model, params), cfg.data,
                                                            prepared, probs["dev"])
    extra.update(int8_encoders(params))
    with timed(f"save {cfg.name}'s whole graph"):
        files.save_model(model, runs.RunFolder(run_dir).model)
    extra.update(params=int(model.count_params()), train_seconds=round(time.time() - started, 1))
    fitted = thresholds_lib.fit_and_save(cfg.evaluation, cfg.data.task, prepared, probs, train_oof, run_dir)
    return report_probabilities(cfg.name, cfg.model.name, cfg.data, prepared, probs, run_dir,
                                fitted, extra=extra, train_oof=train_oof)


def _rescore(cfg, spec, run_dir, allow_external_code) -> dict:
    """Scores a finished run again under ``cfg.evaluation`` (no training): thresholds refitted
    by the new rule on its saved probabilities (they depend on the model only, and the
    completion record vouches for them); a gradient model's best.keras loads for the
    missing-input rows."""
    stored = files.read_json(runs.RunFolder(run_dir).metrics) or {}
    print(f"{run_dir} is finished with thresholds by rule "
          f"{stored.get('threshold_rule', 'per_genre')!r}; re-scoring it with rule "
          f"{cfg.evaluation.thresholds!r} on {cfg.evaluation.threshold_split}")
    with np.load(runs.RunFolder(run_dir).probabilities) as saved:
        saved = {k: saved[k] for k in saved.files}
    runs.clear_complete(run_dir)
    config_lib.save_config(cfg, runs.RunFolder(run_dir).config)
    prepared = prepare_data(cfg.data, spec, show_progress=False)
    runs.check_fingerprint(run_dir, prepared.fingerprint())
    train_oof = saved.get("train_oof")
    probs = {s: saved[s] for s in ("dev", "test") if s in saved}
    fitted = thresholds_lib.fit_and_save(cfg.evaluation, cfg.data.task, prepared, probs, train_oof, run_dir)
    if spec.fitting.cached_features:
        facts = {k: v for k, v in stored.items() if k not in REPORT_KEYS}
        return report_probabilities(cfg.name, cfg.model.name, cfg.data, prepared, probs, run_dir,
                                    fitted, extra=facts, train_oof=train_oof)
    model = load_model(runs.RunFolder(run_dir).model, allow_external_code)
    return evaluate_prepared(model, cfg, prepared, run_dir, fitted, probs=probs,
                             extra={k: stored[k] for k in ("params", "train_seconds") if k in stored},
                             train_oof=train_oof)
