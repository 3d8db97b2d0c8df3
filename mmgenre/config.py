"""Typed experiment configuration: YAML in, validated dataclasses out.

A config file is a mapping with the sections ``data``, ``model`` and ``train``
(plus ``name``, ``workdir`` and an optional ``quick`` block). Unknown keys are
rejected with the closest valid name, values are type-checked, and
``--set section.key=value`` overrides are applied before validation so a
typo on the command line fails the same way as a typo in the file.

The ``quick`` block is a mapping of dotted overrides (``train.epochs: 1``)
applied by ``load_config(..., quick=True)``: every experiment carries its own
smoke-run variant.

This module does not import TensorFlow, so the CLI answers ``--help`` fast.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import yaml

from mmgenre.yaml_config import ConfigError, from_dict, overrides_of, read_yaml_mapping, set_dotted

TASKS = ("multilabel", "single")  # mmgenre.tasks holds what differs between them
SPLITS = ("train", "dev", "test")
STRATEGIES = ("default", "mirrored", "multiworker")  # see mmgenre.training.distributed
TUNERS = ("random", "hyperband", "bayesian")
EXPORT_FORMATS = ("saved_model", "tflite", "int8")  # serving.export writes each
# Dataset protocols: "auto" is "mmimdb" for the MM-IMDb layout, else "min_count".
PROTOCOLS = ("auto", "mmimdb", "min_count")
MMIMDB_GENRES = 23  # the published protocol's genres (gmu.json n_classes)
BAD_INPUT_POLICIES = ("skip", "strict")
SINGLE_LABEL_RULES = ("rarest", "first")
LOSSES = ("crossentropy", "balanced", "focal")  # built by mmgenre.models.heads.loss_for
# Threshold rules of mmgenre.training.thresholds.choose; the first is the default.
THRESHOLD_RULES = ("prevalence", "per_genre")
THRESHOLD_SPLITS = ("dev", "train_oof")
SECTIONS = ("data", "model", "train", "evaluation")
# Weightings of mmgenre.training.late_fusion.fuse (here so the CLI lists them without numpy).
FUSION_WEIGHTINGS = ("auto", "select")
# Score spaces of score fusion; the first is the default (see late_fusion.to_space).
FUSION_SPACES = ("logit_z", "probability")


@dataclasses.dataclass
class DataConfig:
    """Where the movies come from and how they become tensors.

    path: dataset folder (CSV layout with movies.csv, or MM-IMDb layout with
        split.json and dataset/), or a CSV file. Relative paths are resolved
        against the current directory.
    image_size: (height, width) posters are resized to.
    max_tokens / sequence_length: TextVectorization vocabulary size and
        padded length (the study's 10,000 and 200).
    min_genre_count: genres with fewer train examples are dropped (recorded).
    protocol: "min_count" (every genre with min_genre_count train movies; an
        MM-IMDb movie's first plot), "mmimdb" (MM-IMDb as published: the 23
        most frequent train genres, each movie's longest plot; F1 at 0.5 is
        reported beside the dev-chosen rule in every report), or "auto"
        (default: "mmimdb" for the MM-IMDb layout, else "min_count").
    task: "multilabel" (sigmoid + binary cross-entropy, the field's standard)
        or "single" (softmax + categorical cross-entropy, the study's setup).
    single_label_rule: how one genre is picked per movie for task "single":
        "rarest" (the movie's least frequent train genre, so minority genres
        keep their examples) or "first" (first listed).
    bad_input: "skip" (drop and count bad rows) or "strict" (fail naming them).
    max_image_pixels: posters with more pixels are rejected as "huge_image".
    allow_outside_files: read poster files that resolve (symlinks followed)
        outside the dataset folder; by default they are skipped per row as
        "poster_outside_dataset", so a dataset cannot make mmgenre read
        /etc/passwd or your home folder.
    cache: "memory", "none", or a file prefix for tf.data's file cache.
    augment: random flips / crops / colour jitter on train posters only.
    batch_size: examples per batch.
    limit: keep at most this many rows per split (smoke runs), the first ones of
        the dataset, taken before validation; None keeps all.
    train_limit: keep this many train rows, drawn by one fixed shuffle (seed 0)
        so smaller subsets sit inside larger ones (learning curves); dev and
        test are untouched. None keeps all.
    """

    path: str = "../shared/datasets/posters-overviews"
    image_size: tuple = (128, 128)
    max_tokens: int = 10000
    sequence_length: int = 200
    min_genre_count: int = 10
    protocol: str = "auto"
    task: str = "multilabel"
    single_label_rule: str = "rarest"
    bad_input: str = "skip"
    max_image_pixels: int = 40_000_000
    allow_outside_files: bool = False
    cache: str = "memory"
    augment: bool = False
    batch_size: int = 32
    limit: Optional[int] = None
    train_limit: Optional[int] = None

    def check(self):
        check_choice("data.task", self.task, TASKS)
        check_choice("data.protocol", self.protocol, PROTOCOLS)
        check_choice("data.bad_input", self.bad_input, BAD_INPUT_POLICIES)
        check_choice("data.single_label_rule", self.single_label_rule, SINGLE_LABEL_RULES)
        if len(self.image_size) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in self.image_size) \
                or min(self.image_size) < 8:
            raise ConfigError(
                f"data.image_size must be [height, width] with both >= 8, got {list(self.image_size)}"
            )
        for key in ("max_tokens", "sequence_length", "batch_size", "max_image_pixels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        if self.min_genre_count < 1:
            raise ConfigError(f"data.min_genre_count must be >= 1, got {self.min_genre_count}")
        for key in ("limit", "train_limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1 or null, got {getattr(self, key)}")


@dataclasses.dataclass
class ModelConfig:
    """Which registered model to build and its plain hyperparameters.

    name: a name from ``mmgenre.models.registry`` (``mmgenre models`` lists them).
    params: keyword arguments of that model's builder; unknown names are
        rejected when the model is built, listing the valid ones.
    """

    name: str = "cnn"
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and callbacks.

    epochs: maximum epochs (early stopping may end sooner).
    learning_rate: Adam's learning rate.
    seed: seeds Python, NumPy and TensorFlow (keras.utils.set_random_seed).
    patience: EarlyStopping patience in epochs on ``monitor``.
    monitor: validation metric for checkpointing and early stopping; "auto"
        means val_pr_auc (multilabel; the area under the precision-recall
        curve tracks mean average precision and, unlike F1 at 0.5, moves from
        the first epoch) or val_accuracy (single).
    steps_per_epoch: cap on train steps per epoch (smoke runs); None = all.
    cache_features: compute a frozen backbone's features once (cached on disk
        under feature_cache_dir, default $MMGENRE_HOME/features beside the
        encoder caches) and train only the head on them.
    fine_tune_epochs: epochs of a second phase that unfreezes the last
        ``fine_tune_blocks`` blocks (models that define it, e.g. resnet) and
        trains at ``fine_tune_learning_rate``; 0 skips it.
    strategy: "default", "mirrored" (local devices, model.fit) or "multiworker"
        (TF_CONFIG cluster, custom distributed step; trains all epochs, no early
        stopping, keeps the last epoch). See mmgenre.training.distributed.
    loss: "crossentropy", "balanced" (cross-entropy with each genre's positives
        and negatives weighted by train frequency, like scikit-learn's
        class_weight="balanced") or "focal" (focal loss for rare genres).
    label_smoothing: label smoothing of the loss, in [0, 1).
    init_from: a trained run folder (or .keras file) whose layers initialise
        this model's layers of the same name, the genre head excepted (e.g. a
        poster branch pretrained on posters-movielens). None starts from scratch.
    init_frozen: keep the layers copied from ``init_from`` fixed.
    """

    epochs: int = 20
    learning_rate: float = 1e-3
    seed: int = 0
    patience: int = 5
    monitor: str = "auto"
    steps_per_epoch: Optional[int] = None
    cache_features: bool = False
    feature_cache_dir: Optional[str] = None  # None: $MMGENRE_HOME/features
    fine_tune_epochs: int = 0
    fine_tune_blocks: int = 1
    fine_tune_learning_rate: float = 1e-5
    strategy: str = "default"
    loss: str = "crossentropy"
    label_smoothing: float = 0.0
    init_from: Optional[str] = None
    init_frozen: bool = False

    def check(self):
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if not 0 < self.learning_rate < float("inf"):
            raise ConfigError(f"train.learning_rate must be a finite number > 0, got {self.learning_rate}")
        if self.patience < 0:
            raise ConfigError(f"train.patience must be >= 0, got {self.patience}")
        if self.fine_tune_blocks < 1:
            raise ConfigError(f"train.fine_tune_blocks must be >= 1, got {self.fine_tune_blocks}")
        check_choice("train.strategy", self.strategy, STRATEGIES)
        check_choice("train.loss", self.loss, LOSSES)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.init_frozen and not self.init_from:
            raise ConfigError("train.init_frozen needs train.init_from (the run to copy layers from)")
        if self.strategy == "multiworker" and (self.cache_features or self.fine_tune_epochs):
            raise ConfigError("train.strategy multiworker does not combine with cache_features "
                              "or fine_tune_epochs")


@dataclasses.dataclass
class EvaluationConfig:
    """How scores become genre labels (multi-label only); probabilities and mAP do not depend on it.

    thresholds: "prevalence" (flag each genre on about factor x its train
        frequency of movies, one factor picked on dev; robust when a genre has
        few dev positives) or "per_genre" (each genre's threshold maximises its
        own dev F1). Every run also records test metrics under both rules.
        Changing only this section in a finished run's config re-scores its
        saved model instead of retraining.
    threshold_split: where the rule picks thresholds: "dev", or "train_oof" (the
        out-of-fold train probabilities of a model fitted by cross-validation:
        linear_probe, encoder_head). On the paired set's eight probe runs,
        thresholds from the 1,044 out-of-fold train movies scored higher held-out
        dev macro-F1 than thresholds from the other dev half, 8 of 8 under the
        prevalence rule (+0.02 on average; benchmarks/threshold_rules.py).
    """

    thresholds: str = "prevalence"
    threshold_split: str = "dev"

    def check(self):
        check_choice("evaluation.thresholds", self.thresholds, THRESHOLD_RULES)
        check_choice("evaluation.threshold_split", self.threshold_split, THRESHOLD_SPLITS)


@dataclasses.dataclass
class ExperimentConfig:
    """One experiment: data, model, training, and where the run folder goes."""

    name: str = "experiment"
    workdir: str = "runs/{name}"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def check(self):
        self.data.check()
        self.train.check()
        self.evaluation.check()
        if self.data.augment and self.train.cache_features and not self.train.fine_tune_epochs:
            # Cached features come from unaugmented posters, computed once: augment would be
            # silently ignored (with a fine-tuning phase it applies there).
            raise ConfigError("data.augment has no effect with train.cache_features (features are "
                              "computed once from unaugmented posters); turn one of them off")
        try:
            self.run_dir
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"workdir {self.workdir!r} may only use the placeholder {{name}} "
                              f"(problem: {err!r})") from None
        return self

    @property
    def run_dir(self) -> str:
        return self.workdir.format(name=self.name)

    def monitor(self) -> str:
        if self.train.monitor != "auto":
            return self.train.monitor
        from mmgenre import tasks

        return tasks.get(self.data.task).monitor

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["data"]["image_size"] = list(self.data.image_size)
        return out


def metric_direction(name: str) -> str:
    """"min" for losses, "max" for every other monitored metric (F1, PR-AUC, accuracy)."""
    return "min" if "loss" in name else "max"


def check_choice(key, value, choices):
    """Raises ConfigError naming ``key`` and listing ``choices`` when ``value`` is not one."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def load_config(path=None, overrides=(), quick=False, raw: Optional[dict] = None) -> ExperimentConfig:
    """Reads a YAML config (or a ready mapping), applies overrides, validates.

    Args:
        path: YAML file; its ``name`` defaults to the file's stem.
        overrides: iterable of ``section.key=value`` strings, applied last.
        quick: apply the file's ``quick`` block (the smoke-run variant) first.
        raw: a mapping used instead of reading ``path``.
    """
    if raw is None:
        if path is None:
            raise ConfigError("load_config needs a path or a mapping")
        if not os.path.exists(path):
            raise ConfigError(f"config file not found: {path}")
        raw = read_yaml_mapping(path)
        raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    raw = dict(raw)
    for dotted, value in overrides_of(raw, path or "config", overrides, quick):
        set_dotted(raw, dotted, value, SECTIONS)
    return from_dict(ExperimentConfig, raw).check()


def save_config(config: ExperimentConfig, path: str):
    from mmgenre.files import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
