"""A run's fitted decision thresholds and where they came from (``thresholds.json``).

Thresholds are fitted once, in training (``mmgenre.training.thresholds``), on
dev or on out-of-fold train probabilities, and travel with the run: evaluation,
prediction and export apply them unchanged to any dataset, and every report
says which rule chose them on which split.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


@dataclasses.dataclass
class Thresholds:
    """Per-genre thresholds of a multi-label run.

    values: (n_genres,) the thresholds the run decides with (rule ``rule``).
    rule: the rule that chose them ("prevalence", "per_genre").
    chosen_on: the split they were chosen on ("dev", "train_oof").
    by_rule: {rule: (n_genres,) thresholds} every rule's choice on that split, so reports
        show F1 under each rule without refitting.
    """

    values: np.ndarray
    rule: str
    chosen_on: str
    by_rule: dict = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        return f"the run's thresholds (rule {self.rule!r}, chosen on {self.chosen_on} in training)"

    def provenance(self) -> dict:
        return {"rule": self.rule, "chosen_on": self.chosen_on, "fitted": "in training"}

    def to_json(self, path: str, genres):
        from mmgenre.files import write_json

        write_json(path, {"rule": self.rule, "chosen_on": self.chosen_on,
                          "thresholds": dict(zip(genres, map(float, self.values))),
                          "by_rule": {r: dict(zip(genres, map(float, v)))
                                      for r, v in self.by_rule.items()}})

    @classmethod
    def from_json(cls, path: str, genres, metrics: dict | None = None) -> "Thresholds | None":
        """The thresholds saved at ``path`` for ``genres`` (None when the run has none: a
        single-label run). Files from before thresholds.json named its rule hold only
        {genre: value}; the rule and split then come from the run's ``metrics``."""
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if "thresholds" not in saved:  # {genre: value}: rule and split are in metrics.json
            metrics = metrics or {}
            return cls(_values(saved, genres, path), metrics.get("threshold_rule", "prevalence"),
                       metrics.get("threshold_split", "dev"))
        return cls(_values(saved["thresholds"], genres, path), saved["rule"], saved["chosen_on"],
                   {r: _values(v, genres, path) for r, v in saved.get("by_rule", {}).items()})


def _values(by_genre: dict, genres, path) -> np.ndarray:
    missing = [g for g in genres if g not in by_genre]
    if missing:
        raise ValueError(f"{path}: no threshold for genre(s) {missing}; the run folder is "
                         "inconsistent, retrain it")
    return np.array([by_genre[g] for g in genres], np.float64)
