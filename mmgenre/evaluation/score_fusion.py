"""Score-level late fusion: a weighted average of trained models' scores.

Space "logit_z" (default): each run's probabilities become logits, z-scored per
genre with that run's own dev mean and spread, before averaging; the fused
score goes back through a sigmoid. Runs are calibrated differently (a frozen
encoder's logistic regression is flat, a deep model is confident), and
averaging probabilities then follows the most confident run: on the paired set
plain averaging of MiniLM and EfficientNet-Lite0 scored below MiniLM alone,
z-scored logits did not (results/encoders.md). Space "probability" is the plain average.

Weighting "auto": two runs: p = w * p_a + (1 - w) * p_b, with w picked on
mean average precision from a grid; three or more runs (an ensemble, e.g. a poster
model and two text models): equal weights, since fitting several free weights on
a small dev split (193 movies on the sample set) would fit its noise. Weighting
"select": ensemble selection (Caruana et al. 2004): forward selection, with
repetition, of the runs whose equal-weight average most improves dev mAP, so
weights are multiples of 1/steps and unhelpful runs get none.

Where weights are chosen: when every run saved out-of-fold train predictions
(classical and encoder probes do: 5-fold cross-fitting at the C chosen on dev),
on those 1,044 train movies that no fit has seen; otherwise on dev. Runs
checkpointed on dev have optimistic dev scores, and a weight chosen on the
scores that also chose C or the checkpoint inherits that optimism. Thresholds
are then chosen on the fused dev probabilities. Test never influences weights or
thresholds.
"""

from __future__ import annotations

import os

import numpy as np

from mmgenre.config import FUSION_SPACES, FUSION_WEIGHTINGS
from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.runs import PROBABILITIES, RunFolder, check_report_dir, dataset_path, read_json, require_complete

WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def choose_weight(dev_a: np.ndarray, dev_b: np.ndarray, dev_y: np.ndarray, grid=WEIGHT_GRID):
    """The weight of model a maximising dev mAP, and that mAP."""
    scores = [mean_average_precision(dev_y, w * dev_a + (1 - w) * dev_b) for w in grid]
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


def select_ensemble(dev_probs: list, dev_y: np.ndarray, max_steps: int = 20) -> list:
    """Caruana et al. (2004) ensemble selection on dev mAP.

    Args:
        dev_probs: list of (n, n_genres) dev probabilities, one per candidate run.
        dev_y: (n, n_genres) dev targets.
        max_steps: at most this many picks (a run may be picked several times).

    Returns:
        Weight per candidate (picks / total picks); stops when no pick improves dev mAP.
    """
    picks, total, best = np.zeros(len(dev_probs)), 0.0, -np.inf
    running = np.zeros_like(dev_probs[0])
    for _ in range(max_steps):
        scores = [mean_average_precision(dev_y, (running + p) / (total + 1)) for p in dev_probs]
        pick = int(np.argmax(scores))
        if scores[pick] <= best:
            break
        best, total = scores[pick], total + 1
        picks[pick] += 1
        running = running + dev_probs[pick]
    return (picks / total).tolist()


def to_space(member: dict, space: str) -> dict:
    """{split: (n, n_genres) probabilities} -> the same in fusion space ``space``."""
    if space == "probability":
        return member
    if space != "logit_z":
        raise ValueError(f"fusion space must be one of {list(FUSION_SPACES)}, got {space!r}")
    eps = 1e-6
    logits = {s: np.log(np.clip(p, eps, 1 - eps) / np.clip(1 - p, eps, 1 - eps))
              for s, p in member.items()}
    mean, spread = logits["dev"].mean(axis=0), logits["dev"].std(axis=0) + 1e-6
    return {s: (x - mean) / spread for s, x in logits.items()}


def from_space(scores: np.ndarray, space: str) -> np.ndarray:
    """Fused scores -> values in [0, 1] (a monotone map: ranks, mAP and thresholds hold)."""
    return scores if space == "probability" else 1.0 / (1.0 + np.exp(-scores))


def fuse(members: list, select_y: np.ndarray, weighting: str = "auto",
         space: str = FUSION_SPACES[0], select_on: str = "dev"):
    """[{split: probs}, ...] -> ({split: fused probs}, [weight per member]).

    Weighting "auto": two members, the first one's weight is chosen on split
    ``select_on`` (targets ``select_y``); more, equal weights. "select":
    ``select_ensemble`` there. ``space``: see the module docstring.
    """
    if len(members) < 2:
        raise ValueError(f"score fusion needs at least two runs, got {len(members)}")
    members = [to_space(m, space) for m in members]
    if weighting == "select":
        weights = select_ensemble([m[select_on] for m in members], select_y)
    elif weighting != "auto":
        raise ValueError(f"weighting must be one of {list(FUSION_WEIGHTINGS)}, got {weighting!r}")
    elif len(members) == 2:
        first, _ = choose_weight(members[0][select_on], members[1][select_on], select_y)
        weights = [first, 1.0 - first]
    else:
        weights = [1.0 / len(members)] * len(members)
    return {s: from_space(sum(w * m[s] for w, m in zip(weights, members)), space)
            for s in members[0]}, weights


def saved_probabilities(run_dir: str):
    """({split: (ids, (n, n_genres) probabilities)}, genres, task) written by any finished run
    (Keras, classical, score fusion) through evaluate.report_probabilities."""
    require_complete(run_dir)  # a folder killed mid-evaluation is not a result to fuse
    path = RunFolder(run_dir).probabilities
    if not os.path.exists(path):
        raise ValueError(f"{run_dir}: no {PROBABILITIES}; runs write it since score fusion reads "
                         "saved probabilities; rerun the model in a new folder")
    saved = np.load(path, allow_pickle=False)
    metrics = read_json(RunFolder(run_dir).metrics) or {}
    # Runs from before metrics.json recorded the task: their config says it.
    task = metrics.get("task") or _task_from_config(run_dir)
    splits = [s for s in ("dev", "test", "train_oof") if s in saved]
    return ({s: (saved[f"{s}_ids"].tolist(), saved[s]) for s in splits}, metrics.get("genres"), task)


def _task_from_config(run_dir):
    from mmgenre import config as config_lib

    path = RunFolder(run_dir).config
    return config_lib.load_config(path).data.task if os.path.exists(path) else None


def check_same_data(runs: list, fingerprint: str, path: str):
    """Refuses runs trained on other movies than ``path`` holds (their metrics.json records the
    dataset fingerprint), even when their movie ids and genre order happen to match."""
    for run in runs:
        saved = (read_json(RunFolder(run).metrics) or {}).get("data_fingerprint")
        if saved and saved != fingerprint:
            raise ValueError(f"{run} was trained on other data than {path} (dataset fingerprint "
                             f"{saved}, here {fingerprint}): score fusion combines runs of one "
                             "dataset only")


def aligned_probabilities(runs: list, data_cfg=None, data_path: str | None = None):
    """(prepared data, [{split: probs}] per run, data config, threshold rule) on the movies
    every run scored.

    ``data_cfg`` (the dataset the runs used) and the threshold rule come from
    the first run with a config.yaml (the rule defaults to the default rule); its
    dataset is ``data_path`` when given, else the one the run recorded, found
    from any current folder.
    ``prepared.splits`` dev/test keep only those movies, in the same order as
    the probabilities.
    """
    from mmgenre import config as config_lib
    from mmgenre.data import prepare
    from mmgenre.models.registry import ModelSpec

    loaded = [saved_probabilities(run) for run in runs]
    _, genres, task = loaded[0]
    for run, (_, other, other_task) in zip(runs[1:], loaded[1:]):
        if other_task != task:
            raise ValueError(f"{runs[0]} is a {task!r} run and {run} a {other_task!r} run: "
                             "score fusion needs runs of one task (data.task)")
        if other != genres:
            raise ValueError(f"{runs[0]} and {run} predict different genres "
                             f"({genres} vs {other}); train all on the same data settings")
    source = next((r for r in runs if os.path.exists(RunFolder(r).config)), None)
    saved_cfg = source and config_lib.load_config(RunFolder(source).config)
    if data_cfg is None:
        if not saved_cfg and not data_path:
            raise ValueError("no run has a config.yaml; pass the dataset (--data)")
        data_cfg = saved_cfg.data if saved_cfg else config_lib.DataConfig()
        data_cfg.path = data_path or dataset_path(source, data_cfg.path)
    rule = saved_cfg.evaluation.thresholds if saved_cfg else config_lib.THRESHOLD_RULES[0]
    both = ModelSpec("score_fusion", None, ("poster", "overview"), "", accepts_missing=True)
    prepared = prepare.prepare_data(data_cfg, both, show_progress=False)
    check_same_data(runs, prepared.dataset_fingerprint, data_cfg.path)
    if prepared.vocab.genres != genres:
        raise ValueError(f"{data_cfg.path} gives genres {prepared.vocab.genres}, the runs "
                         f"predict {genres}: not the dataset they were trained on")
    members = [{} for _ in runs]
    # Out-of-fold train scores take part only when every run has them.
    oof = all("train_oof" in probs for probs, _, _ in loaded)
    # Align on movie id: a poster-only run and a text-only run may keep different rows.
    for split, source in (("dev", "dev"), ("test", "test"), *((("train", "train_oof"),) if oof else ())):
        rows, targets = prepared.splits[split]
        index = [{movie: i for i, movie in enumerate(probs[source][0])} for probs, _, _ in loaded]
        keep = [i for i, movie in enumerate(rows["id"]) if all(movie in ix for ix in index)]
        for (probs, _, _), ix, out in zip(loaded, index, members):
            out[source] = probs[source][1][[ix[rows["id"][i]] for i in keep]]
        prepared.splits[split] = (rows.iloc[keep].reset_index(drop=True), targets[keep])
    return prepared, members, data_cfg, rule


def run_score_fusion(runs: list, out_dir: str, data_cfg=None,
                     threshold_rule: str | None = None, weighting: str = "auto",
                     space: str = FUSION_SPACES[0], data_path: str | None = None) -> dict:
    """Fuses the saved dev/test probabilities of ``runs`` (folders) on the movies all scored.

    Any run may be a Keras model, a classical baseline or another score fusion.
    ``data_cfg``, ``data_path`` and ``threshold_rule`` default as in ``aligned_probabilities``;
    ``weighting`` is "auto" or "select" (see the module docstring).
    """
    check_report_dir(out_dir)
    from mmgenre.evaluation import evaluate

    prepared, members, data_cfg, saved_rule = aligned_probabilities(runs, data_cfg, data_path)
    select_on = "train_oof" if "train_oof" in members[0] else "dev"
    select_y = prepared.splits["train" if select_on == "train_oof" else "dev"][1]
    fused, weights = fuse(members, select_y, weighting, space, select_on)
    oof = fused.pop("train_oof", None)
    names = [os.path.basename(os.path.normpath(run)) for run in runs]
    if len(set(names)) < len(names):  # e.g. runs/a/model and runs/b/model: one weight each
        names = [f"{i}:{os.path.normpath(run)}" for i, run in enumerate(runs)]
    return evaluate.report_probabilities(
        f"score fusion ({' + '.join(names)})" if weighting == "auto" else
        f"ensemble selected on dev from {len(runs)} runs", "score_fusion", data_cfg,
        prepared, fused, out_dir, extra={"weights": dict(zip(names, weights)), "space": space,
                                         "weights_chosen_on": select_on},
        threshold_rule=threshold_rule or saved_rule, train_oof=oof)
