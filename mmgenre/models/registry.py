"""Model name -> builder: the only place that knows every model.

A builder is a plain function returning a functional ``keras.Model`` whose
inputs are a dict keyed by modality ("poster": (batch, height, width, 3)
float32 in [0, 1]; "overview": (batch, sequence_length) int64 token ids, or
(batch,) strings for models with a tokenizer inside) and whose output is
(batch, n_genres) probabilities. Every family is feature backbones and a head:
the gradient-trained families end in the shared ``heads.classifier`` (backbone
output "features", then the head model "head": Dense "embedding", Dropout,
"genres"), so a frozen backbone's features are cached and a fusion reuses branch
embeddings; the cached-feature families put ``probe.branch_features`` blocks
(layers "<feature>_l2") under a fitted head (the probe's Dense "logits", the
encoder head's model "head") and a Platt "genres" layer. Every module of this package is imported by
``names()``/``get()``, so a new family module registers itself.

Builders take two kinds of keyword arguments: data-derived ones filled in by
the trainer (``DATA_ARGS``) and plain hyperparameters from ``model.params`` in
the config. ``build_model`` passes each builder only the data arguments its
signature names, so no caller needs an if/else over model names.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Callable, Optional

# Arguments the trainer derives from the data; not settable in model.params.
DATA_ARGS = ("num_genres", "task", "image_size", "vocab_size", "sequence_length")


@dataclasses.dataclass(frozen=True)
class Fitting:
    """How a family is fitted and what that gives: the one table the trainer, the tuner and
    the CLI read (never a comparison of names).

    trainable: ``mmgenre train`` makes it from a config (score fusion is made from runs).
    cached_features: its head is fitted on cached features of frozen backbones
        (``mmgenre.training.trainer.CACHED_FEATURE_FITTERS`` names the fitter).
    out_of_fold: it yields out-of-fold train probabilities (``threshold_split: train_oof``,
        score-fusion weights on train).
    search: how ``mmgenre tune`` scores a trial ("dev": model.fit, scored on dev; "k-fold":
        the head cross-validated on train), or why it is not searched.
    """

    trainable: bool
    cached_features: bool
    out_of_fold: bool
    search: str


FITTINGS = {
    "gradient": Fitting(True, False, False, "dev"),
    # A probe's regression chooses its own C by cross-validation: nothing left to search.
    "linear_solver": Fitting(True, True, True, "chooses its regularisation by cross-validation "
                             "itself; search the Keras head over the same features instead (model "
                             "encoder_head, configs/search/encoder_head.yaml)"),
    "cached_features": Fitting(True, True, True, "k-fold"),
    "score_fusion": Fitting(False, False, False, "made from trained runs by `mmgenre score-fusion`"),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    modalities: tuple  # or a function of the model's params (a probe's inputs follow its features)
    description: str
    accepts_missing: bool = False  # takes rows lacking one modality (fusion)
    fine_tune: Optional[Callable] = None  # fine_tune(model, blocks): unfreeze for phase two
    # How the trainer fits it: "gradient" (model.fit), "linear_solver" (a probe's head solved on
    # cached features, mmgenre.training.solve), "cached_features" (a Keras head trained on
    # cached features, mmgenre.training.cached_head) or "score_fusion" (never trained from a config:
    # made from trained runs by `mmgenre score-fusion`).
    fitted_by: str = "gradient"

    @property
    def fitting(self) -> Fitting:
        return FITTINGS[self.fitted_by]

    def for_params(self, params: dict | None) -> "ModelSpec":
        """This spec with its modalities resolved for ``params``."""
        if not callable(self.modalities):
            return self
        return dataclasses.replace(self, modalities=tuple(self.modalities(dict(params or {}))))

    def check_trainable(self) -> "ModelSpec":
        """This spec, or ValueError when ``mmgenre train`` / ``tune`` cannot make the model."""
        if not self.fitting.trainable:
            raise ValueError(f"model {self.name!r} is made from trained runs by `mmgenre "
                             "score-fusion RUN RUN ... --out DIR`, not trained from a config")
        return self

    def hyperparameters(self) -> dict:
        """Plain hyperparameters of the builder with their defaults."""
        return {
            p.name: p.default for p in inspect.signature(self.builder).parameters.values()
            if p.name not in DATA_ARGS
        }

    def params(self, given: dict | None = None) -> dict:
        """The builder's hyperparameters: its defaults, overridden by ``given`` (a config's
        ``model.params``)."""
        return {**self.hyperparameters(), **(given or {})}


_REGISTRY: dict = {}


def register(name: str, modalities, description: str = "", accepts_missing: bool = False,
             fine_tune: Optional[Callable] = None, fitted_by: str = "gradient"):
    """Decorator registering ``builder`` under ``name``; ``modalities`` is a tuple or a
    function of the params returning one."""

    if fitted_by not in FITTINGS:
        raise ValueError(f"model {name!r}: fitted_by must be one of {list(FITTINGS)}, got {fitted_by!r}")

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, builder,
                                    modalities if callable(modalities) else tuple(modalities),
                                    description, accepts_missing, fine_tune, fitted_by)
        return builder

    return wrap


def _load_all():
    """Imports every module of mmgenre.models: a new family module registers itself, no list
    to keep (keras-hub discovers its presets the same way)."""
    import pkgutil

    import mmgenre.models as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def names() -> list:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str, params: dict | None = None) -> ModelSpec:
    """The spec of model ``name``, its modalities resolved for ``params``."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name].for_params(params)


def check_params(name: str, params: dict) -> ModelSpec:
    """Raises ValueError naming any param the builder does not take."""
    spec = get(name, params)
    valid = spec.hyperparameters()
    for key in params:
        if key in DATA_ARGS:
            raise ValueError(
                f"model.params.{key} is derived from the data and set by the trainer; "
                f"set it through the data section instead"
            )
        if key not in valid:
            raise ValueError(
                f"model {name!r} has no hyperparameter {key!r}; valid: {sorted(valid)}"
            )
    return spec


def build_model(name: str, params: dict | None = None, **data_args):
    """Builds model ``name`` with ``params`` and the data arguments it takes."""
    params = dict(params or {})
    spec = check_params(name, params)
    accepted = inspect.signature(spec.builder).parameters
    kwargs = {k: v for k, v in data_args.items() if k in accepted}
    return spec.builder(**kwargs, **params)
