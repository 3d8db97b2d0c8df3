"""One training phase: compile, callbacks, model.fit (or the multi-worker step), on a run folder.

What each callback writes goes through ``mmgenre.runs`` (atomic files), in an
order chosen so a kill between any two writes leaves a folder a rerun resumes
from: best.keras first, then the epoch's history row, then BackupAndRestore's
state. A resumed epoch that runs again replaces its history row.
"""

from __future__ import annotations

import math
import os
import shutil
import sys

import keras
import numpy as np

from mmgenre import config as config_lib
from mmgenre import files, runs
from mmgenre.data.prepare import PreparedData, make_split_dataset, takes_raw_text
from mmgenre.encoders import sources
from mmgenre.models import heads, registry
from mmgenre.training import distributed, feature_cache
from mmgenre.training.graph_check import check_image_size


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; nothing of that epoch is kept."""


def build_for_data(cfg: config_lib.ExperimentConfig, prepared: PreparedData):
    vocab_size = (prepared.vectorizer.vocabulary_size() if prepared.vectorizer is not None
                  else cfg.data.max_tokens)
    return registry.build_model(
        cfg.model.name, cfg.model.params, num_genres=len(prepared.vocab), task=cfg.data.task,
        image_size=tuple(cfg.data.image_size), vocab_size=vocab_size,
        sequence_length=cfg.data.sequence_length)


class HeadFirst:
    """Stands in for a model over frozen encoders while its head is fitted on cached features;
    ``whole_graph()`` then builds the model and sets what the fit set.

    The fitters (``solve.fit_linear_probe``, ``cached_head.fit_encoder_head``) use a model's
    TF-IDF layers (``get_layer("tfidf...")``: real layers here, adapted on the train overviews)
    and set the weights of its head layers ("logits", "head", "genres": kept here). Why: the
    whole graph holds every encoder's weights (all-mpnet-base-v2: 0.77 GB resident), and beside
    the large set's features (0.35 GB) that made the encoder head the largest row of the
    README's first command (2.45 GB alone in a process, issue 28); here the two never meet.
    """

    def __init__(self, cfg, prepared, params: dict, log=print):
        from mmgenre.models.probe import TFIDF, branch_features

        self.cfg, self.prepared, self.features = cfg, prepared, list(params["features"])
        sources.prepare_known(self.features, log)  # embedding needs them; the graph, checked sizes
        check_image_size(self.features, cfg.data.image_size)
        overview = keras.Input((), dtype="string", name="overview")
        self.tfidf = keras.Model(overview, branch_features(
            TFIDF, {"overview": overview}, int(params["tfidf_max_tokens"]))) \
            if TFIDF in self.features else None
        self.weights: dict = {}

    def get_layer(self, name: str):
        if name.startswith("tfidf"):
            return self.tfidf.get_layer(name)
        return _KeptWeights(self.weights, name)

    def whole_graph(self):
        """The model, its TF-IDF adapted again (the same train overviews: the same vocabulary
        and idf; ``graph_check`` compares the graph with the fit's features) and the head's
        weights set."""
        from mmgenre.encoders.loading import release_loaded_encoders
        from mmgenre.training.probe_features import adapt_text_features

        # The fit's features are computed: the embedders, and the fit's freed memory, go before
        # the graph loads its own encoders (the head row of the README's first command: 2.60 ->
        # 2.45 GB, results/NOTES.md "Memory").
        release_loaded_encoders()
        model = build_for_data(self.cfg, self.prepared)
        adapt_text_features(model, self.features, self.prepared)
        for name, weights in self.weights.items():
            model.get_layer(name).set_weights(weights)
        return model


class _KeptWeights:
    """A head layer of a ``HeadFirst`` model: ``set_weights`` keeps them for the whole graph."""

    def __init__(self, kept: dict, name: str):
        self.kept, self.name = kept, name

    def set_weights(self, weights):
        self.kept[self.name] = [np.asarray(w) for w in weights]


def loss_for(cfg: config_lib.ExperimentConfig, prepared: PreparedData | None = None):
    """The configured loss; "balanced" weighs genres by ``prepared``'s train frequency."""
    rate = None if prepared is None else prepared.splits["train"][1].mean(axis=0)
    return heads.loss_for(cfg.data.task, cfg.train.loss, cfg.train.label_smoothing, rate)


def compile_model(model, cfg: config_lib.ExperimentConfig, num_genres: int, learning_rate=None,
                  prepared: PreparedData | None = None):
    """Adam + the configured loss + training metrics; pass ``prepared`` for loss "balanced"."""
    return compile_built(model, keras.optimizers.Adam(learning_rate or cfg.train.learning_rate),
                         loss_for(cfg, prepared), heads.metrics_for(cfg.data.task, num_genres))


def compile_built(model, optimizer, loss, metrics=None):
    """``model.compile``, then the optimizer's slots and the metrics' variables made here, eagerly.

    Keras (TensorFlow backend, no strategy) otherwise makes them inside the first traced train
    step (F1Score on its first update), and a tf.function that creates variables is traced twice:
    once more per fit, about 0.9 s of a 4.3 s one-epoch tiny cnn run (2 cores). The slots are the
    same zeros, in the same order; each metric gets one update on an empty row, then is reset to
    zeros.
    """
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    model.optimizer.build(model.trainable_variables)
    empty = np.zeros((1, model.outputs[0].shape[-1]), "float32")  # (1, genres)
    for metric in metrics or ():
        metric.update_state(empty, empty)
        metric.reset_state()
    return model


def best_so_far(run_dir, monitor):
    """Best monitored value of an interrupted run, so a resumed run keeps its best checkpoint."""
    history = runs.read_history(run_dir)
    if monitor not in history:
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
            files.save_model(self.target, self.path)


class HistoryLogger(keras.callbacks.Callback):
    """history.csv, rewritten atomically after each epoch (Keras' CSVLogger appends in place,
    so a kill left an empty or half-written file that broke every rerun)."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch, logs=None):
        runs.write_history_row(self.run_dir, epoch, logs)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss by raising, before any callback saves that epoch:
    best.keras, history and the backup keep the last good epoch (TerminateOnNaN let the
    NaN epoch be saved as best.keras)."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"training diverged: loss is {float(loss)} in epoch {self.epoch + 1} (batch {batch + 1}); "
                "the run folder keeps the last good epoch; lower train.learning_rate in a new "
                "workdir, or rerun to retry from there")


def callbacks(run_dir, monitor, patience, extra=(), target=None, backup="first"):
    """The phase's callbacks, in the order their epoch-end writes must happen."""
    mode = config_lib.metric_direction(monitor)
    return [
        DivergenceGuard(),
        SaveBestModel(target, runs.RunFolder(run_dir).model, monitor, mode,
                      best_so_far(run_dir, monitor)),
        HistoryLogger(run_dir),
        keras.callbacks.BackupAndRestore(runs.RunFolder(run_dir).backup(backup)),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(runs.RunFolder(run_dir).logs),
        *extra,
    ]


def discard_unreadable_backup(run_dir, backup, initial_epoch):
    """A run killed while BackupAndRestore was writing leaves a truncated weights file that
    would crash the resume; restart this phase instead, saying so, and drop its history rows."""
    import h5py

    path = os.path.join(runs.RunFolder(run_dir).backup(backup), runs.RunFolder.BACKUP_WEIGHTS)
    if not os.path.exists(path):
        return
    try:
        h5py.File(path, "r").close()
    except OSError as err:
        print(f"warning: {path} is unreadable ({err}): the run was stopped while saving it; "
              f"restarting this phase from epoch {initial_epoch}", file=sys.stderr)
        shutil.rmtree(runs.RunFolder(run_dir).backup(backup))
        history = runs.read_history(run_dir)
        if "epoch" in history:
            files.write_csv(history[history["epoch"] < initial_epoch],
                           runs.RunFolder(run_dir).history)


def verbosity():
    return 1 if sys.stdout.isatty() else 2


def cached_datasets(extractor, cfg, prepared, **datasets) -> list:
    """Each split's backbone features (``extractor`` run once over ``datasets[split]``, cached
    on disk under the data's and the backbone's identity) with the targets, batched."""
    identity = feature_cache.backbone_identity(extractor)
    cache_dir = cfg.train.feature_cache_dir or os.path.join(sources.home(), "features")
    batched = []
    for split, ds in datasets.items():
        rows, targets = prepared.splits[split]
        key = feature_cache.cache_key(os.path.abspath(cfg.data.path), split, cfg.data.image_size,
                                      cfg.data.sequence_length, cfg.data.max_tokens,
                                      list(rows["id"]), identity)
        features = feature_cache.cached_features(extractor, ds, os.path.join(cache_dir, f"{key}.npy"))
        batched.append(feature_cache.feature_dataset(features, targets, cfg.data.batch_size,
                                                     training=split == "train", seed=cfg.train.seed))
    return batched


def fit_inputs(model, cfg, prepared, cache: bool):
    """(model to fit, train dataset, dev dataset): ``model`` on the splits' inputs, or with
    ``cache`` its head model, compiled, on its frozen backbone's cached features."""
    raw_text = takes_raw_text(model)
    train_ds = make_split_dataset(cfg.data, prepared, "train", training=not cache,
                                  seed=cfg.train.seed, raw_text=raw_text)
    dev_ds = make_split_dataset(cfg.data, prepared, "dev", raw_text=raw_text)
    if not cache:
        return model, train_ds, dev_ds
    extractor, head = feature_cache.frozen_backbone(model)
    head = compile_model(head, cfg, len(prepared.vocab), prepared=prepared)
    return (head, *cached_datasets(extractor, cfg, prepared, train=train_ds, dev=dev_ds))


def fit_phase(model, cfg, prepared, run_dir, backup, epochs, extra_callbacks, verbose, cache,
              initial_epoch=0):
    """One training phase; with ``cache`` only the head trains, on cached backbone features."""
    discard_unreadable_backup(run_dir, backup, initial_epoch)
    fit_model, train_ds, dev_ds = fit_inputs(model, cfg, prepared, cache)
    monitor = cfg.monitor()
    fit_model.fit(train_ds, validation_data=dev_ds, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=cfg.train.steps_per_epoch,
                  shuffle=False,  # the tf.data pipeline shuffles
                  verbose=verbosity() if verbose is None else verbose,
                  callbacks=callbacks(run_dir, monitor, cfg.train.patience, extra_callbacks,
                                      target=model, backup=backup))


def fit_multiworker(model, strategy, cfg, prepared, run_dir):
    """Multi-worker phase: custom distributed step (model.fit fails there, keras issue
    20585); keeps the last epoch as best.keras since there is no dev-based selection."""
    train_ds = make_split_dataset(cfg.data, prepared, "train", training=True, seed=cfg.train.seed,
                                  raw_text=takes_raw_text(model))
    epochs = distributed.run_multiworker_epochs(
        model, strategy, loss_for(cfg, prepared),
        cfg.train.learning_rate, train_ds,
        len(prepared.splits["train"][0]), cfg.data.batch_size, cfg.train.epochs,
        runs.RunFolder(run_dir).backup("multiworker"))
    for epoch, loss in epochs:
        runs.write_history_row(run_dir, epoch, {"loss": loss})
    files.save_model(model, runs.RunFolder(run_dir).model)
