"""train_and_evaluate(config, workdir): data -> model -> fit -> evaluation -> run folder.

A run folder holds everything needed to judge and reuse the model:

    config.yaml         the resolved config (rerunning with it resumes)
    validation.json     per-reason counts of skipped input
    genres.json         the genre vocabulary, with dropped genres and why
    vectorizer.json     the overview vocabulary (adapted on train only)
    best.keras          the best model on the monitored dev metric
    history.csv         per-epoch metrics (CSVLogger, appended on resume)
    thresholds.json     per-genre thresholds chosen on dev (evaluation.thresholds)
    probabilities.npz   dev and test probabilities with movie ids (score fusion)
    metrics.json        dev and test metrics, with the prior baseline
    report.md / metrics.csv / errors.md / per_genre.csv / *.png
    backup/, logs/      BackupAndRestore state and TensorBoard logs

Rerunning the same config in the same folder resumes an interrupted run where
it stopped (BackupAndRestore) and returns the stored metrics of a finished one;
a finished run whose config differs only in its ``evaluation`` section is
re-scored from its best.keras, not retrained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import keras
import numpy as np
import pandas as pd

from mmgenre import config as config_lib
from mmgenre.data import labels as labels_lib
from mmgenre.data import pipeline
from mmgenre.data.records import load_records
from mmgenre.data.validate import select_modalities, validate
from mmgenre.evaluation import metrics as metrics_lib
from mmgenre.evaluation import plots, reports, score_fusion
from mmgenre.models import heads, registry, weights
from mmgenre.training import distributed, feature_cache

SPLIT_NAMES = ("train", "dev", "test")


@dataclasses.dataclass
class PreparedData:
    """Validated rows per split with aligned targets, and the fitted vocabularies."""

    splits: dict  # split -> (DataFrame, (n, n_genres) float32 targets)
    vocab: labels_lib.GenreVocabulary
    vectorizer: object
    report: object
    modalities: tuple
    allow_missing: bool = False
    skipped_unlabelled: int = 0
    unseen_genres: dict = dataclasses.field(default_factory=dict)


def prepare_data(data_cfg: config_lib.DataConfig, spec: registry.ModelSpec, vocab=None,
                 vectorizer=None, path=None, show_progress=True) -> PreparedData:
    """Loads, validates and labels a dataset for the model described by ``spec``.

    Rows need every input of the model, or (models that accept a missing
    modality) at least one.

    ``vocab`` and ``vectorizer`` come from a trained run when evaluating on new
    data; otherwise both are fitted on this dataset's train split only.
    """
    records = load_records(path or data_cfg.path)
    modalities = spec.modalities
    table, report = validate(records, data_cfg.bad_input, modalities, data_cfg.max_image_pixels,
                             show_progress=show_progress)
    table = select_modalities(table, modalities, require_all=not spec.accepts_missing)
    # With a run's vocabulary every row is new data; otherwise train defines the genres.
    outside_train = table if vocab is not None else table[table["split"] != "train"]
    if vocab is None:
        vocab = labels_lib.GenreVocabulary.from_train(table, data_cfg.min_genre_count)
    splits, skipped = {}, 0
    for split in SPLIT_NAMES:
        rows = table[table["split"] == split].reset_index(drop=True)
        if split == "train" and data_cfg.train_limit:
            rows = subsample(rows, data_cfg.train_limit)
        if data_cfg.limit:
            rows = rows.head(data_cfg.limit)
        targets = labels_lib.targets(vocab, rows, data_cfg.task, data_cfg.single_label_rule)
        if data_cfg.task == "single":
            labelled = targets.sum(axis=1) > 0
            skipped += int((~labelled).sum())
            rows, targets = rows[labelled].reset_index(drop=True), targets[labelled]
        splits[split] = (rows, targets)
    if "overview" in modalities and vectorizer is None:
        train_texts = [t for t in splits["train"][0]["overview"] if isinstance(t, str)]
        if not train_texts:
            raise ValueError(f"{path or data_cfg.path}: no usable train overviews to adapt the vectorizer on")
        vectorizer = pipeline.build_vectorizer(train_texts, data_cfg.max_tokens,
                                               data_cfg.sequence_length)
    unseen = vocab.unseen(outside_train) if len(table) else {}
    return PreparedData(splits, vocab, vectorizer, report, tuple(modalities),
                        spec.accepts_missing, skipped, dict(unseen))


def subsample(rows, n: int):
    """The first ``n`` rows of one fixed shuffle (seed 0, independent of train.seed):
    the subsets of a learning curve are nested and identical across seeds."""
    order = np.random.default_rng(0).permutation(len(rows))
    return rows.iloc[np.sort(order[:n])].reset_index(drop=True)


def takes_raw_text(model) -> bool:
    """True when the model's "overview" input is a string (TF-Hub text encoders)."""
    inputs = model.input if isinstance(model.input, dict) else {}
    return "overview" in inputs and inputs["overview"].dtype == "string"


def make_split_dataset(data_cfg, prepared: PreparedData, split: str, training=False, seed=0,
                       raw_text=False):
    rows, targets = prepared.splits[split]
    if rows.empty:
        raise ValueError(f"split {split!r} has no usable rows for inputs {prepared.modalities}")
    cache = data_cfg.cache
    if cache not in ("memory", "none"):
        cache = f"{cache}-{split}"
    return pipeline.make_dataset(
        rows, targets, prepared.modalities, data_cfg.image_size, prepared.vectorizer,
        data_cfg.batch_size, training=training, cache=cache,
        augment=data_cfg.augment and training, seed=seed, allow_missing=prepared.allow_missing,
        raw_text=raw_text)


def build_for_data(cfg: config_lib.ExperimentConfig, prepared: PreparedData):
    vocab_size = (prepared.vectorizer.vocabulary_size() if prepared.vectorizer is not None
                  else cfg.data.max_tokens)
    return registry.build_model(
        cfg.model.name, cfg.model.params, num_genres=len(prepared.vocab), task=cfg.data.task,
        image_size=tuple(cfg.data.image_size), vocab_size=vocab_size,
        sequence_length=cfg.data.sequence_length)


def loss_for(cfg: config_lib.ExperimentConfig, prepared: PreparedData | None = None):
    """The configured loss; "balanced" weighs genres by ``prepared``'s train frequency."""
    rate = None
    if prepared is not None and cfg.data.task == "multilabel":
        rate = prepared.splits["train"][1].mean(axis=0)
    return heads.loss_for(cfg.data.task, cfg.train.loss, cfg.train.label_smoothing, rate)


def compile_model(model, cfg: config_lib.ExperimentConfig, num_genres: int, learning_rate=None,
                  prepared: PreparedData | None = None):
    """Adam + the configured loss + training metrics; pass ``prepared`` for loss "balanced"."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate or cfg.train.learning_rate),
                  loss=loss_for(cfg, prepared), metrics=heads.metrics_for(cfg.data.task, num_genres))
    return model


def _best_so_far(history_path, monitor):
    """Best monitored value of an interrupted run, so a resumed run keeps its best checkpoint."""
    if not os.path.exists(history_path):
        return None
    history = pd.read_csv(history_path)
    if monitor not in history or history.empty:
        return None
    values = history[monitor].dropna()
    if values.empty:
        return None
    return float(values.min() if config_lib.metric_direction(monitor) == "min" else values.max())


class SaveBestModel(keras.callbacks.Callback):
    """Saves ``target`` (not necessarily the model being fitted) when ``monitor`` improves.

    With cached features the fitted model is the head, but best.keras must be
    the full model that takes posters; the two share their head layers.
    """

    def __init__(self, target, path, monitor, mode, best=None):
        super().__init__()
        self.target, self.path, self.monitor, self.mode, self.best = target, path, monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = float(value)
            self.target.save(self.path)


def _callbacks(run_dir, monitor, patience, extra=(), target=None, backup="backup"):
    mode = config_lib.metric_direction(monitor)
    history_path = os.path.join(run_dir, "history.csv")
    return [
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, backup)),
        SaveBestModel(target, os.path.join(run_dir, "best.keras"), monitor, mode,
                      _best_so_far(history_path, monitor)),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.CSVLogger(history_path, append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
        keras.callbacks.TerminateOnNaN(),
        *extra,
    ]


def _discard_unreadable_backup(run_dir, backup, initial_epoch):
    """A run killed while BackupAndRestore was writing leaves a truncated weights file that
    would crash the resume; restart this phase instead, saying so, and drop its history rows."""
    import h5py
    import shutil

    path = os.path.join(run_dir, backup, "latest.weights.h5")
    if not os.path.exists(path):
        return
    try:
        h5py.File(path, "r").close()
    except OSError as err:
        print(f"warning: {path} is unreadable ({err}): the run was stopped while saving it; "
              f"restarting this phase from epoch {initial_epoch}", file=sys.stderr)
        shutil.rmtree(os.path.join(run_dir, backup))
        history_path = os.path.join(run_dir, "history.csv")
        if os.path.exists(history_path):
            history = pd.read_csv(history_path)
            history[history["epoch"] < initial_epoch].to_csv(history_path, index=False)


def _fit(model, cfg, prepared, run_dir, backup, epochs, extra_callbacks, verbose, cache,
         initial_epoch=0):
    """One training phase; with ``cache`` only the head trains, on cached backbone features."""
    _discard_unreadable_backup(run_dir, backup, initial_epoch)
    raw_text = takes_raw_text(model)
    train_ds = make_split_dataset(cfg.data, prepared, "train", training=not cache,
                                  seed=cfg.train.seed, raw_text=raw_text)
    dev_ds = make_split_dataset(cfg.data, prepared, "dev", raw_text=raw_text)
    fit_model = model
    if cache:
        extractor, head = feature_cache.split_at_embedding(model)
        fit_model = compile_model(head, cfg, len(prepared.vocab), prepared=prepared)
        data = {}
        for split, ds in (("train", train_ds), ("dev", dev_ds)):
            rows, targets = prepared.splits[split]
            key = feature_cache.cache_key(os.path.abspath(cfg.data.path), split, cfg.data.image_size,
                                          cfg.model.name, cfg.model.params, list(rows["id"]),
                                          feature_cache.weights_identity(cfg.train.init_from))
            features = feature_cache.cached_features(
                extractor, ds, os.path.join(cfg.train.feature_cache_dir, f"{key}.npy"))
            data[split] = feature_cache.feature_dataset(features, targets, cfg.data.batch_size,
                                                        training=split == "train", seed=cfg.train.seed)
        train_ds, dev_ds = data["train"], data["dev"]
    monitor = cfg.monitor()
    fit_model.fit(train_ds, validation_data=dev_ds, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=cfg.train.steps_per_epoch,
                  shuffle=False,  # the tf.data pipeline shuffles
                  verbose=verbose or _verbose(),
                  callbacks=_callbacks(run_dir, monitor, cfg.train.patience, extra_callbacks,
                                       target=model, backup=backup))


def _fit_multiworker(model, strategy, cfg, prepared, run_dir):
    """Multi-worker phase: custom distributed step (model.fit fails there, keras issue
    20585); keeps the last epoch as best.keras since there is no dev-based selection."""
    train_ds = make_split_dataset(cfg.data, prepared, "train", training=True, seed=cfg.train.seed,
                                  raw_text=takes_raw_text(model))
    epochs = distributed.fit_multiworker(
        model, strategy, loss_for(cfg, prepared),
        cfg.train.learning_rate, train_ds,
        len(prepared.splits["train"][0]), cfg.data.batch_size, cfg.train.epochs,
        os.path.join(run_dir, "backup_multiworker"))
    history_path = os.path.join(run_dir, "history.csv")
    pd.DataFrame(epochs, columns=["epoch", "loss"]).to_csv(
        history_path, mode="a", header=not os.path.exists(history_path), index=False)
    model.save(os.path.join(run_dir, "best.keras"))


def _check_run_dir(run_dir, cfg):
    """Refuses to mix two configs in one folder; returns True if the run is finished.

    The ``evaluation`` section may differ: it changes how a trained model is
    scored, not the model.
    """
    saved = os.path.join(run_dir, "config.yaml")
    if os.path.exists(saved):
        previous, current = config_lib.load_config(saved).to_dict(), cfg.to_dict()
        for section in (previous, current):
            section.pop("evaluation")
        if previous != current:
            raise ValueError(
                f"{run_dir} holds a run with a different config ({saved}); "
                "use another workdir or delete the folder")
        return os.path.exists(os.path.join(run_dir, "metrics.json"))
    return False


def _verbose():
    return 1 if sys.stdout.isatty() else 2


def train_and_evaluate(cfg: config_lib.ExperimentConfig, workdir: str | None = None,
                       callbacks=(), verbose=None) -> dict:
    """Trains ``cfg``'s model, evaluates it on dev and test, writes the run folder.

    Returns the metrics dict also written to ``metrics.json``.
    """
    run_dir = workdir or cfg.run_dir
    spec = registry.check_params(cfg.model.name, cfg.model.params)
    if _check_run_dir(run_dir, cfg):
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
            stored = json.load(f)
        # Runs from before evaluation.thresholds existed used per-genre thresholds.
        if stored.get("threshold_rule", "per_genre") == cfg.evaluation.thresholds:
            print(f"{run_dir} is already finished; returning its metrics.json")
            return stored
        return _rescore(cfg, spec, run_dir, stored)
    # First: MultiWorkerMirroredStrategy must exist before any TensorFlow op runs.
    strategy = distributed.make_strategy(cfg.train.strategy)
    os.makedirs(run_dir, exist_ok=True)
    config_lib.save_config(cfg, os.path.join(run_dir, "config.yaml"))
    keras.utils.set_random_seed(cfg.train.seed)

    prepared = prepare_data(cfg.data, spec)
    with open(os.path.join(run_dir, "validation.json"), "w", encoding="utf-8") as f:
        json.dump({**prepared.report.as_dict(),
                   "skipped_without_kept_genre": prepared.skipped_unlabelled,
                   "unseen_genres_outside_train": prepared.unseen_genres,
                   "rows_per_split": {s: len(r) for s, (r, _) in prepared.splits.items()}},
                  f, indent=2)
    prepared.vocab.to_json(os.path.join(run_dir, "genres.json"))
    if prepared.vectorizer is not None:
        pipeline.save_vectorizer(prepared.vectorizer, os.path.join(run_dir, "vectorizer.json"))

    with strategy.scope():
        model = build_for_data(cfg, prepared)
        if cfg.train.init_from:
            copied = weights.load_pretrained(model, cfg.train.init_from, frozen=cfg.train.init_frozen)
            print(f"initialised {len(copied)} layers from {cfg.train.init_from}"
                  f"{' (frozen)' if cfg.train.init_frozen else ''}")
        model = compile_model(model, cfg, len(prepared.vocab), prepared=prepared)
    monitor = cfg.monitor()
    started = time.time()
    best_path = os.path.join(run_dir, "best.keras")
    phase_one_done = os.path.join(run_dir, "phase1.done")
    if not os.path.exists(phase_one_done):
        if cfg.train.strategy == "multiworker":
            _fit_multiworker(model, strategy, cfg, prepared, run_dir)
        else:
            _fit(model, cfg, prepared, run_dir, "backup", cfg.train.epochs, callbacks, verbose,
                 cache=cfg.train.cache_features)
        if not os.path.exists(best_path):
            # Every epoch had a NaN monitor value: keep the last weights, say so.
            print(f"warning: {monitor} never improved; saving the last epoch's model", file=sys.stderr)
            model.save(best_path)
        open(phase_one_done, "w").close()
    if cfg.train.fine_tune_epochs:
        # Phase two (fine-tuning): unfreeze the last blocks, train on posters at a lower rate.
        if spec.fine_tune is None:
            raise config_lib.ConfigError(f"model {cfg.model.name!r} has no fine-tuning phase; "
                                         "set train.fine_tune_epochs: 0")
        model = load_model(best_path, allow_external_code=True)
        spec.fine_tune(model, cfg.train.fine_tune_blocks)
        compile_model(model, cfg, len(prepared.vocab), cfg.train.fine_tune_learning_rate,
                      prepared=prepared)
        done = len(pd.read_csv(os.path.join(run_dir, "history.csv")))
        _fit(model, cfg, prepared, run_dir, "backup_finetune", done + cfg.train.fine_tune_epochs,
             callbacks, verbose, cache=False, initial_epoch=done)
    model = load_model(best_path, allow_external_code=True)  # our own file, just written
    plots.training_curves(pd.read_csv(os.path.join(run_dir, "history.csv")),
                          os.path.join(run_dir, "training_curves.png"), cfg.name)
    results = evaluate_prepared(model, cfg, prepared, run_dir, thresholds=None,
                                extra={"params": int(model.count_params()),
                                       "train_seconds": round(time.time() - started, 1)})
    return results


def _rescore(cfg, spec, run_dir, stored) -> dict:
    """Scores a finished run's best.keras again under ``cfg.evaluation`` (no training)."""
    print(f"{run_dir} is finished with thresholds by rule "
          f"{stored.get('threshold_rule', 'per_genre')!r}; re-scoring its best.keras with rule "
          f"{cfg.evaluation.thresholds!r}")
    config_lib.save_config(cfg, os.path.join(run_dir, "config.yaml"))
    prepared = prepare_data(cfg.data, spec, show_progress=False)
    model = load_model(os.path.join(run_dir, "best.keras"), allow_external_code=True)
    return evaluate_prepared(model, cfg, prepared, run_dir, thresholds=None,
                             extra={k: stored[k] for k in ("params", "train_seconds") if k in stored})


def load_model(path: str, allow_external_code: bool = False):
    """Loads a .keras file; mmgenre's custom layers are registered first.

    A model holding a TF-Hub/SavedModel layer (TFSMLayer) runs that SavedModel's
    code when loaded, which Keras allows only with safe_mode=False: pass
    ``allow_external_code=True`` for files you trust.
    """
    registry.names()
    try:
        return keras.models.load_model(path, safe_mode=not allow_external_code)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err).lower():
            raise ValueError(
                f"{path} holds a SavedModel (TF-Hub) layer; loading it runs external code. "
                "If you trust the file, pass allow_external_code=True "
                "(CLI: --allow-external-code).") from None
        raise


def predict_split(model, data_cfg, prepared, split, absent=None) -> np.ndarray:
    """(n, n_genres) probabilities; ``absent`` names a modality to blank out
    (zeros: the absent signal of fused models) to measure robustness."""
    ds = make_split_dataset(data_cfg, prepared, split, raw_text=takes_raw_text(model))
    if absent is not None:
        import tensorflow as tf

        ds = ds.map(lambda x, y: ({**x, absent: tf.zeros_like(x[absent])}, y))
    return model.predict(ds, verbose=0)


def mean_gate(model, data_cfg, prepared, split) -> dict | None:
    """Mean GMU gate on ``split``: how much each modality contributes on average."""
    if "gmu" not in [layer.name for layer in model.layers]:
        return None
    probe = keras.Model(model.inputs, model.get_layer("gmu").output[1])
    z = probe.predict(make_split_dataset(data_cfg, prepared, split, raw_text=takes_raw_text(model)),
                      verbose=0)
    return {"poster": float(np.mean(z)), "overview": float(1.0 - np.mean(z))}


def evaluate_prepared(model, cfg, prepared: PreparedData, out_dir: str, thresholds=None,
                      splits=("dev", "test"), extra=None) -> dict:
    """Scores ``model`` on ``splits`` and writes the run's tables and plots.

    Fused models (those accepting a missing modality) are also scored with each
    input absent, and GMU models report their mean gate.
    """
    probs = {s: predict_split(model, cfg.data, prepared, s) for s in splits
             if not prepared.splits[s][0].empty}
    extra = dict(extra or {})
    variants = {}
    if prepared.allow_missing and cfg.data.task == "multilabel":
        # Fused models, judged as a catalogue would meet them: one input absent.
        final = "test" if "test" in probs else next(iter(probs))
        variants = {f"{absent} missing": predict_split(model, cfg.data, prepared, final, absent)
                    for absent in prepared.modalities}
        extra["gmu_mean_gate"] = mean_gate(model, cfg.data, prepared, final)
    return report_probabilities(cfg.name, cfg.model.name, cfg.data, prepared, probs, out_dir,
                                thresholds, extra, variants, cfg.evaluation.thresholds)


def report_probabilities(name, model_name, data_cfg, prepared: PreparedData, probs: dict,
                         out_dir: str, thresholds=None, extra=None, variants=None,
                         threshold_rule: str = config_lib.THRESHOLD_RULES[0]) -> dict:
    """Metrics, tables, plots and error analysis from per-split probabilities.

    Any model's output goes through here (Keras, scikit-learn baselines, score
    fusion), so every row of every table is computed the same way.

    Args:
        probs: {split: (n, n_genres) probabilities aligned with prepared.splits}.
        thresholds: per-genre thresholds; None chooses them on probs["dev"] by
            ``threshold_rule`` (and saves thresholds.json). Test never influences
            them. Metrics under every rule are recorded too (``by_rule``).
        variants: {label: probabilities on the final split} scored as extra rows
            (e.g. a fused model with its poster missing).
    """
    os.makedirs(out_dir, exist_ok=True)
    genres = prepared.vocab.genres
    task = data_cfg.task
    train_targets = prepared.splits["train"][1]
    by_rule = {}
    if task == "multilabel" and "dev" in probs:
        by_rule = {rule: metrics_lib.choose_thresholds(rule, prepared.splits["dev"][1], probs["dev"],
                                                       train_targets)
                   for rule in config_lib.THRESHOLD_RULES}
    if thresholds is not None:
        threshold_rule = "given"  # e.g. a trained run's thresholds applied to new data
    elif task == "multilabel":
        thresholds = by_rule[threshold_rule]
        with open(os.path.join(out_dir, "thresholds.json"), "w", encoding="utf-8") as f:
            json.dump(dict(zip(genres, map(float, thresholds))), f, indent=2)
    np.savez(os.path.join(out_dir, score_fusion.PROBABILITIES),  # score fusion reads these
             **{s: p for s, p in probs.items()},
             **{f"{s}_ids": np.asarray(prepared.splits[s][0]["id"], dtype=str) for s in probs})
    results = {"model": model_name, "name": name, "genres": genres, **(extra or {}),
               "threshold_rule": threshold_rule, "splits": {}}
    rows = []
    for split, prob in probs.items():
        truth = prepared.splits[split][1]
        split_metrics = metrics_lib.evaluate_split(truth, prob, task, genres, thresholds)
        results["splits"][split] = {"n": len(truth), **split_metrics}
        if by_rule:  # the threshold-rule ablation, free for every run
            results["splits"][split]["by_rule"] = {
                rule: metrics_lib.multilabel_metrics(truth, prob, t) for rule, t in by_rule.items()}
        rows += [{"split": split, **r} for r in reports.metrics_rows(name, split_metrics)]
        if task == "multilabel" and len(train_targets):
            prior = metrics_lib.evaluate_split(
                truth, metrics_lib.prior_probabilities(train_targets, len(truth)), task, genres)
            results["splits"][split]["prior"] = prior["at_0.5"]
            rows += [{"split": split, **r} for r in reports.metrics_rows("prior (train frequency)", prior)]
    final = "test" if "test" in probs else next(iter(probs))
    if variants:
        results["missing_modality"] = {}
        for label, prob in variants.items():
            scores = metrics_lib.evaluate_split(prepared.splits[final][1], prob, task, genres,
                                                thresholds)
            results["missing_modality"][label] = scores
            rows += [{"split": final, **r} for r in reports.metrics_rows(f"{name} ({label})", scores)]
    table = pd.DataFrame(rows)
    table.to_csv(os.path.join(out_dir, "metrics.csv"), index=False)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    report = [f"# {name} ({model_name})", "",
              f"Dataset: `{data_cfg.path}`; inputs: {', '.join(prepared.modalities)}; "
              f"{len(genres)} genres; task: {task}.", "",
              reports.to_markdown(table), ""]
    if task == "multilabel":
        per_genre = metrics_lib.per_genre_table(prepared.splits[final][1], probs[final], genres,
                                                thresholds)
        per_genre.to_csv(os.path.join(out_dir, "per_genre.csv"), index=False)
        plots.per_genre_f1(per_genre, os.path.join(out_dir, "per_genre_f1.png"),
                           f"{name}: per-genre F1 on {final}")
        report += [f"## Per-genre ({final}, thresholds chosen on dev by rule {threshold_rule!r})", "",
                   reports.to_markdown(per_genre), ""]
        with open(os.path.join(out_dir, "errors.md"), "w", encoding="utf-8") as f:
            f.write(f"# Error analysis: {name} on {final}\n\n")
            f.write(reports.error_analysis(prepared.splits[final][0], prepared.splits[final][1],
                                           probs[final], genres, thresholds))
    else:
        report += ["Confusion matrix (rows true, columns predicted): see metrics.json.", ""]
    if results.get("gmu_mean_gate"):
        gate = results["gmu_mean_gate"]
        report += [f"GMU mean gate on {final}: poster {gate['poster']:.3f}, "
                   f"overview {gate['overview']:.3f}.", ""]
    if prepared.vocab.dropped:
        report += ["Dropped genres: " + "; ".join(f"{g} ({why})" for g, why in
                                                 prepared.vocab.dropped.items()), ""]
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(report))
    return results
