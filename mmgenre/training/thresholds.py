"""Decision thresholds fitted in training: rule name -> function, and the run's record.

A multi-label run turns probabilities into genres at per-genre thresholds. They
are fitted here, once, on dev or on out-of-fold train probabilities
(``evaluation.threshold_split``), saved with the run (``mmgenre.decisions``),
and applied unchanged wherever the run is scored: on its own test split or on
anybody else's data. Test never influences them.
"""

from __future__ import annotations

import numpy as np

from mmgenre import runs, tasks
from mmgenre.decisions import Thresholds
from mmgenre.evaluation.metrics import macro_f1

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
PREVALENCE_FACTORS = (0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def tune_thresholds(y_true: np.ndarray, y_prob: np.ndarray, grid=THRESHOLD_GRID) -> np.ndarray:
    """Per-genre threshold maximising that genre's F1 on (dev) data.

    Genres without a positive example keep 0.5: there is nothing to tune on.
    Ties pick the threshold closest to 0.5 so a flat F1 curve does not drift.
    """
    thresholds = np.full(y_true.shape[1], 0.5)
    candidates = np.asarray(grid)[np.argsort(np.abs(np.asarray(grid) - 0.5), kind="stable")]
    for g in range(y_true.shape[1]):
        positive = np.asarray(y_true[:, g]) > 0
        if not positive.any():
            continue
        # scikit-learn's F1, 2 tp / (positives + predicted), for every threshold at once: one
        # f1_score call per threshold cost 0.65 s of a tiny run's 8 s, mostly argument checks.
        predicted = np.asarray(y_prob[:, g])[:, None] >= candidates[None, :]  # (n, thresholds)
        tp = (predicted & positive[:, None]).sum(axis=0)
        scores = 2.0 * tp / (positive.sum() + predicted.sum(axis=0))
        thresholds[g] = candidates[int(np.argmax(scores))]
    return thresholds


def prevalence_thresholds(y_true: np.ndarray, y_prob: np.ndarray, train_prevalence: np.ndarray,
                          factors=PREVALENCE_FACTORS) -> np.ndarray:
    """Per-genre thresholds that flag ``factor`` x the train frequency of each genre on dev.

    Genre g's threshold is the (1 - factor * prevalence_g) quantile of its (n,) dev
    scores; one ``factor`` for all genres is picked on dev macro-F1. Each threshold
    uses every dev score (not only the genre's few dev positives), so it does not
    collapse on genres with 2-4 dev positives the way per-genre F1 tuning does:
    in split-half cross-validation on the sample set's dev split (193 movies) it
    led ``tune_thresholds`` on held-out macro-F1 for 15 of 15 models, by 0.011 to
    0.054 (results/threshold_rules.md). Ties pick the smallest factor.
    """
    y_prob = np.asarray(y_prob)
    prevalence = np.asarray(train_prevalence, dtype=float)

    def at(factor):
        quantiles = np.clip(1.0 - factor * prevalence, 0.0, 1.0)
        return np.array([np.quantile(y_prob[:, g], quantiles[g]) for g in range(y_prob.shape[1])])

    # Macro-F1 alone: the whole table per factor (mAP, calibration) cost 0.3 s of a tiny run.
    scores = [macro_f1(y_true, y_prob >= at(f)) for f in factors]
    return at(factors[int(np.argmax(scores))])


def _prevalence_rule(y_true, y_prob, train_targets):
    return prevalence_thresholds(y_true, y_prob, np.asarray(train_targets).mean(axis=0))


def _per_genre_rule(y_true, y_prob, train_targets):
    return tune_thresholds(y_true, y_prob)


# Rule name -> rule(y_true, y_prob, train_targets) -> (n_genres,) thresholds; the order of
# mmgenre.config.THRESHOLD_RULES (its first is the default).
RULES = {"prevalence": _prevalence_rule, "per_genre": _per_genre_rule}


def choose(rule: str, y_true: np.ndarray, y_prob: np.ndarray,
           train_targets: np.ndarray) -> np.ndarray:
    """(n_genres,) thresholds chosen by ``rule`` on (n, n_genres) targets and probabilities."""
    if rule not in RULES:
        raise ValueError(f"threshold rule must be one of {list(RULES)}, got {rule!r}")
    return RULES[rule](y_true, y_prob, train_targets)


def fit(rule: str, chosen_on: str, y_true, y_prob, train_targets) -> Thresholds:
    """The run's thresholds by ``rule`` on split ``chosen_on``, with every rule's choice."""
    by_rule = {r: choose(r, y_true, y_prob, train_targets) for r in RULES}
    return Thresholds(by_rule[rule], rule, chosen_on, by_rule)


def fit_for_run(prepared, probs: dict, train_oof, evaluation_cfg) -> Thresholds:
    """A run's thresholds from its ``probs`` ({split: probabilities}) or out-of-fold train
    probabilities, as ``evaluation_cfg`` (thresholds rule, threshold_split) says.

    Raises ValueError (before anything is written) when the split it names is missing.
    """
    y_train = prepared.splits["train"][1]
    if evaluation_cfg.threshold_split == "train_oof":
        if train_oof is None:
            raise ValueError("evaluation.threshold_split 'train_oof' needs out-of-fold train "
                             "probabilities (linear_probe, encoder_head); use 'dev'")
        y, p = y_train, train_oof
    elif "dev" in probs:
        y, p = prepared.splits["dev"][1], probs["dev"]
    else:
        raise ValueError("thresholds are chosen on dev, and this data has no dev rows")
    return fit(evaluation_cfg.thresholds, evaluation_cfg.threshold_split, y, p, y_train)


def fit_and_save(evaluation_cfg, task: str, prepared, probs: dict, train_oof, run_dir):
    """The run's thresholds (``fit_for_run``) saved in ``run_dir`` (thresholds.json); None
    for single-label runs (they take the top genre)."""
    if not tasks.get(task).uses_thresholds:
        return None
    fitted = fit_for_run(prepared, probs, train_oof, evaluation_cfg)
    runs.clear_complete(run_dir)  # the folder changes: not a finished result until reported
    fitted.to_json(runs.RunFolder(run_dir).thresholds, prepared.vocab.genres)
    return fitted
