"""keras-tuner HyperModel for every registered model: build(hp) reads the
hyperparameters, then calls the plain builder; model code knows nothing of tuning.

A search space maps dotted config keys to ranges:

    space:
      train.learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}
      model.params.dropout: {type: float, min: 0.1, max: 0.6, step: 0.1}
      model.params.dense_units: {type: choice, values: [64, 128, 256]}
      data.batch_size: {type: choice, values: [16, 32, 64]}

Each hyperparameter's default is the base experiment's value, so
build(HyperParameters()) gives the untuned model.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

import keras
import keras_tuner as kt

from mmgenre import config as config_lib
from mmgenre.models import registry
from mmgenre.models.encoder_head import feature_head
from mmgenre.training import cached_head as head_lib
from mmgenre.training import fit as fit_lib
from mmgenre.yaml_config import set_dotted

# Keys outside model.params that a trial may change without rebuilding the data.
TUNABLE_KEYS = ("train.learning_rate", "train.loss", "train.label_smoothing", "train.epochs",
                "data.batch_size", "data.augment")
TYPES = ("float", "int", "choice", "bool")


def _get(raw: dict, dotted: str):
    node = raw
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_space(space: dict, cfg: config_lib.ExperimentConfig) -> dict:
    """Validates a search space against the experiment; returns it unchanged.

    Raises:
        config.ConfigError naming the key and the problem.
    """
    if not space:
        raise config_lib.ConfigError("search space is empty: give at least one hyperparameter")
    spec = registry.get(cfg.model.name, cfg.model.params)
    if spec.fitting.search not in ("dev", "k-fold"):
        raise config_lib.ConfigError(f"model {cfg.model.name!r} is not searched: it "
                                     f"{spec.fitting.search}")
    valid_params = spec.hyperparameters()
    if spec.fitting.search == "k-fold":
        # The features are computed once for the whole search: only the head varies.
        valid_params = {k: v for k, v in valid_params.items() if k in head_lib.HEAD_ARGS}
    for key, spec in space.items():
        if key.startswith("model.params."):
            name = key[len("model.params."):]
            if name not in valid_params:
                raise config_lib.ConfigError(
                    f"search space key {key!r}: model {cfg.model.name!r} has no hyperparameter "
                    f"{name!r}; valid: {sorted(valid_params)}")
        elif key not in TUNABLE_KEYS:
            raise config_lib.ConfigError(
                f"search space key {key!r} cannot be searched; use model.params.<name> or one of "
                f"{list(TUNABLE_KEYS)}")
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            raise config_lib.ConfigError(f"search space key {key!r}: 'type' must be one of {list(TYPES)}")
        kind = spec["type"]
        if kind in ("float", "int"):
            if "min" not in spec or "max" not in spec:
                raise config_lib.ConfigError(f"search space key {key!r}: {kind} needs min and max")
            if not spec["min"] < spec["max"]:
                raise config_lib.ConfigError(
                    f"search space key {key!r}: empty range min={spec['min']} >= max={spec['max']}")
            if spec.get("sampling", "linear") == "log" and spec["min"] <= 0:
                raise config_lib.ConfigError(f"search space key {key!r}: log sampling needs min > 0")
        if kind == "choice" and not spec.get("values"):
            raise config_lib.ConfigError(f"search space key {key!r}: choice needs a non-empty values list")
    return space


def declare(hp: kt.HyperParameters, key: str, spec: dict, default):
    """Declares one hyperparameter on ``hp``; ``default`` is the base config's value."""
    kind = spec["type"]
    if kind == "choice":
        values = list(spec["values"])
        return hp.Choice(key, values, default=default if default in values else values[0])
    if kind == "bool":
        return hp.Boolean(key, default=bool(default))
    low, high = spec["min"], spec["max"]
    inside = default is not None and low <= default <= high
    if kind == "int":
        return hp.Int(key, int(low), int(high), step=spec.get("step", 1),
                      sampling=spec.get("sampling", "linear"), default=int(default) if inside else None)
    step = spec.get("step")
    if inside and step:  # keras-tuner needs a default on the step grid
        default = low + round((default - low) / step) * step
    return hp.Float(key, float(low), float(high), step=step, sampling=spec.get("sampling", "linear"),
                    default=float(default) if inside and math.isfinite(default) else None)


def config_for(base: dict, values: dict) -> config_lib.ExperimentConfig:
    """The experiment config with hyperparameter ``values`` (dotted keys) applied."""
    raw = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(raw, key, value, config_lib.SECTIONS)
    return config_lib.load_config(raw=raw)


def log_fit(path, hp, seconds, epochs):
    """Appends one JSON line per fit: keras-tuner keeps no timings or worker names."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"values": hp.values, "seconds": round(seconds, 2), "epochs": epochs,
                                "worker": os.environ.get("KERASTUNER_TUNER_ID", "local")}) + "\n")


class SpaceHyperModel(kt.HyperModel):
    """A HyperModel over ``self.space`` (dotted config keys) with defaults from ``self.base``."""

    base: dict
    space: dict

    def values(self, hp) -> dict:
        """{dotted key: value} of this trial, each declared on ``hp``."""
        return {key: declare(hp, key, spec, _get(self.base, key)) for key, spec in self.space.items()}


class GenreHyperModel(SpaceHyperModel):
    """Builds and fits one trial of a registered model on already-prepared data.

    With ``train.cache_features`` a trial fits only the head on its frozen backbone's
    features, cached under the backbone's identity: trials that vary the head share one
    backbone pass (a search over a frozen-encoder fusion's head runs in seconds a trial).

    Args:
        base: the experiment config as a plain mapping (resolved, no quick block).
        space: validated search space.
        prepared: prepare.PreparedData shared by all trials (vocabularies fitted on train).
        objective: the validation metric trials are scored and early-stopped on.
        log_path: JSON-lines file receiving each fit's hyperparameters, seconds and worker.
    """

    def __init__(self, base: dict, space: dict, prepared, objective: str, log_path=None, **kwargs):
        super().__init__(**kwargs)
        self.base, self.space, self.prepared, self.objective = base, space, prepared, objective
        self.log_path = log_path


    def build(self, hp):
        cfg = config_for(self.base, self.values(hp))
        model = fit_lib.build_for_data(cfg, self.prepared)
        return fit_lib.compile_model(model, cfg, len(self.prepared.vocab), prepared=self.prepared)

    def fit(self, hp, model, *args, **kwargs):
        cfg = config_for(self.base, self.values(hp))
        model, train_ds, dev_ds = fit_lib.fit_inputs(model, cfg, self.prepared,
                                                     cfg.train.cache_features)
        callbacks = list(kwargs.pop("callbacks", []))
        # Early stopping inside trials, on the search objective.
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=self.objective, mode=config_lib.metric_direction(self.objective),
            patience=cfg.train.patience, restore_best_weights=True))
        callbacks.append(keras.callbacks.TerminateOnNaN())
        kwargs.setdefault("epochs", cfg.train.epochs)
        started = time.time()
        history = model.fit(train_ds, validation_data=dev_ds, callbacks=callbacks, shuffle=False,
                            steps_per_epoch=cfg.train.steps_per_epoch, *args, **kwargs)
        log_fit(self.log_path, hp, time.time() - started, len(history.history.get("loss", [])))
        losses = history.history.get("loss", [])
        if losses and not math.isfinite(losses[-1]):
            # Raising makes keras-tuner record the trial as failed and go on.
            raise FloatingPointError(f"trial diverged: loss {losses[-1]} with {self.values(hp)}")
        return history


class CachedFeatureHyperModel(SpaceHyperModel):
    """One trial of an encoder head on cached features: seconds, scored by cross-validation.

    build(hp) returns the head alone (``encoder_head.feature_head``: {feature: (batch,
    dim)} -> (batch, genres) logits); fit(hp, head) trains ``folds`` fresh heads, each on
    the other folds of the train split, and returns {OBJECTIVE: out-of-fold mAP}, so the
    search never sees dev or test (on the 193-movie dev split, dev and 5-fold train scores
    ranked encoders the other way round).

    Args:
        base: the experiment config as a plain mapping.
        space: validated search space (head hyperparameters and train/data keys).
        x: {feature: (n_train, dim)} cached train features.
        y: (n_train, genres) train targets.
        log_path: JSON-lines file receiving each trial's values, seconds and worker.
    """

    OBJECTIVE = "cv_train_mAP"

    def __init__(self, base: dict, space: dict, x: dict, y, log_path=None, **kwargs):
        super().__init__(**kwargs)
        self.base, self.space, self.x, self.y, self.log_path = base, space, x, y, log_path


    def _config(self, hp):
        cfg = config_for(self.base, self.values(hp))
        return cfg, registry.get(cfg.model.name).params(cfg.model.params)

    def build(self, hp):
        _, params = self._config(hp)
        return feature_head({f: a.shape[1] for f, a in self.x.items()}, self.y.shape[1],
                            **{k: params[k] for k in head_lib.HEAD_ARGS})

    def fit(self, hp, model, *args, **kwargs):
        cfg, params = self._config(hp)
        started = time.time()
        _, score = head_lib.out_of_fold(self.x, self.y, params, cfg.train, cfg.data.batch_size,
                                        int(params["folds"]), cfg.train.seed)
        log_fit(self.log_path, hp, time.time() - started, cfg.train.epochs)
        return {self.OBJECTIVE: score}
