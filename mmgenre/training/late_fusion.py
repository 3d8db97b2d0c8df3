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

Calibration and the model: a multi-label fusion's fused logit goes through
per-genre Platt scaling fitted on the split the weights were chosen on, so its
outputs are probabilities again (z-scored logits are not), and when every member
is a saved Keras model (fed raw inputs, or token ids its run's vectorizer makes
from text) the fused folder holds the whole fusion as one
model (``mmgenre.models.score_fusion``) that evaluate, predict and export take.
"""

from __future__ import annotations

import os

import numpy as np

from mmgenre.config import FUSION_SPACES, FUSION_WEIGHTINGS
from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.evaluation.saved_scores import aligned_probabilities
from mmgenre.models.layers import ScoreFusion
from mmgenre.runs import RunFolder, check_report_dir

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


def logit(p: np.ndarray) -> np.ndarray:
    """Probabilities -> logits, clipped as ``ScoreFusion`` clips them in the graph (at the
    float32 bounds: 1 - 1e-6 rounded to float32 is 1 - 1.013e-6, a logit 0.013 away)."""
    low, high = (float(np.float32(b)) for b in (ScoreFusion.EPSILON, 1 - ScoreFusion.EPSILON))
    p = np.clip(np.asarray(p, np.float64), low, high)
    return np.log(p) - np.log1p(-p)


def logit_statistics(dev_probs: np.ndarray):
    """(mean, spread), each (n_genres,): a member's per-genre dev logit statistics."""
    logits = logit(dev_probs)
    return logits.mean(axis=0), logits.std(axis=0) + 1e-6


def to_space(member: dict, space: str) -> dict:
    """{split: (n, n_genres) probabilities} -> the same in fusion space ``space``."""
    if space == "probability":
        return member
    if space != "logit_z":
        raise ValueError(f"fusion space must be one of {list(FUSION_SPACES)}, got {space!r}")
    mean, spread = logit_statistics(member["dev"])
    return {s: (logit(p) - mean) / spread for s, p in member.items()}


def from_space(scores: np.ndarray, space: str) -> np.ndarray:
    """Fused scores -> values in [0, 1] (a monotone map: ranks, mAP and thresholds hold)."""
    return scores if space == "probability" else 1.0 / (1.0 + np.exp(-scores))


def fused_logits(scores: np.ndarray, space: str) -> np.ndarray:
    """Fused scores -> the logit ``ScoreFusion`` outputs (what Platt scaling then calibrates)."""
    return logit(scores) if space == "probability" else scores


def fuse(members: list, select_y: np.ndarray, weighting: str = "auto",
         space: str = FUSION_SPACES[0], select_on: str = "dev"):
    """[{split: probs}, ...] -> ({split: fused probs}, [weight per member]).

    Weighting "auto": two members, the first one's weight is chosen on split
    ``select_on`` (targets ``select_y``); more, equal weights. "select":
    ``select_ensemble`` there. ``space``: see the module docstring.
    """
    scores, weights = fuse_scores(members, select_y, weighting, space, select_on)
    return {s: from_space(v, space) for s, v in scores.items()}, weights


def fuse_scores(members: list, select_y: np.ndarray, weighting: str = "auto",
                space: str = FUSION_SPACES[0], select_on: str = "dev"):
    """As ``fuse``, with the fused scores left in ``space`` (logits for "logit_z")."""
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
    return {s: sum(w * m[s] for w, m in zip(weights, members)) for s in members[0]}, weights


def run_score_fusion(runs: list, out_dir: str, data_cfg=None,
                     threshold_rule: str | None = None, weighting: str = "auto",
                     space: str = FUSION_SPACES[0], data_path: str | None = None) -> dict:
    """Fuses the saved dev/test probabilities of ``runs`` (folders) on the movies all scored.

    Any run may be a Keras model, a classical baseline or another score fusion.
    A multi-label fusion is Platt-calibrated on the split its weights were
    chosen on; when every run is a saved Keras model (``member_model``), ``out_dir``
    also gets the fused model (best.keras, config.yaml, genres.json), checked
    against the fused probabilities on dev movies, and is then a run folder.
    ``data_cfg``, ``data_path`` and ``threshold_rule`` default as in
    ``aligned_probabilities``; ``weighting`` is "auto" or "select" (see the
    module docstring).
    """
    check_report_dir(out_dir)
    from mmgenre import config as config_lib
    from mmgenre import tasks
    from mmgenre.evaluation import evaluate
    from mmgenre.runs import clear_complete
    from mmgenre.training import thresholds as thresholds_lib
    from mmgenre.training.calibration import platt, sigmoid

    clear_complete(out_dir)  # before the model changes: a kill leaves an unfinished folder

    prepared, members, data_cfg, saved_rule = aligned_probabilities(runs, data_cfg, data_path)
    select_on = "train_oof" if "train_oof" in members[0] else "dev"
    select_y = prepared.splits["train" if select_on == "train_oof" else "dev"][1]
    scores, weights = fuse_scores(members, select_y, weighting, space, select_on)
    names = [os.path.basename(os.path.normpath(run)) for run in runs]
    if len(set(names)) < len(names):  # e.g. runs/a/model and runs/b/model: one weight each
        names = [f"{i}:{os.path.normpath(run)}" for i, run in enumerate(runs)]
    extra = {"weights": dict(zip(names, weights)), "space": space, "weights_chosen_on": select_on}
    if tasks.get(data_cfg.task).uses_thresholds:  # multi-label: one sigmoid per genre
        logits = {s: fused_logits(v, space) for s, v in scores.items()}
        scale, offset = platt(logits[select_on], select_y)
        fused = {s: sigmoid(scale * z + offset).astype("float32") for s, z in logits.items()}
        extra["calibration"] = f"platt on {select_on}"
        saved, note = save_fused_model(
            runs, members, weights, (scale, offset), space, weighting, out_dir, data_cfg,
            prepared, threshold_rule or saved_rule, fused["dev"])
    else:
        fused = {s: from_space(v, space) for s, v in scores.items()}
        saved, note = False, "single-label fusions stay a report"
    extra.update(fused_model=RunFolder.model if saved else None, fused_model_note=note)
    oof = fused.pop("train_oof", None)
    # Thresholds on the fused dev probabilities (the weights and calibration used train_oof
    # where every run has it; thresholds stay on dev, as the fused runs' own did).
    fitted = thresholds_lib.fit_and_save(
        config_lib.EvaluationConfig(thresholds=threshold_rule or saved_rule), data_cfg.task,
        prepared, fused, oof, out_dir)
    return evaluate.report_probabilities(
        f"score fusion ({' + '.join(names)})" if weighting == "auto" else
        f"ensemble selected on dev from {len(runs)} runs", "score_fusion", data_cfg,
        prepared, fused, out_dir, fitted, extra=extra, train_oof=oof)


def _member_models(runs: list):
    """([loaded member models], poster size they share or None), or raises ValueError saying
    why these runs cannot be one graph."""
    from mmgenre import config as config_lib
    from mmgenre.models.score_fusion import member_model, member_problem

    models, sizes = [], set()
    for run in runs:
        folder = RunFolder(run)
        if not (os.path.exists(folder.model) and os.path.exists(folder.config)):
            raise ValueError(f"{run} has no best.keras and config.yaml (a classical baseline "
                             "or a report-only fusion)")
        if config_lib.load_config(folder.config).model.params.get("precision") == "int8":
            raise ValueError(f"{run} is served through int8 LiteRT encoders, which a Keras graph "
                             "cannot hold (its float graph would score other features)")
        model = member_model(run)
        problem = member_problem(model)
        if problem:
            raise ValueError(f"{run}: {problem}")
        if "poster" in model.input:
            sizes.add(tuple(config_lib.load_config(folder.config).data.image_size))
        models.append(model)
    if len(sizes) > 1:
        raise ValueError(f"the runs read posters at different sizes {sorted(sizes)}")
    return models, next(iter(sizes), None)


def save_fused_model(runs, members, weights, calibration, space, weighting, out_dir, data_cfg,
                     prepared, threshold_rule, dev_probs) -> tuple:
    """Builds, fills, checks and saves the fused graph of ``runs`` in ``out_dir`` (with its
    config.yaml and genres.json); returns (saved, what happened) for metrics.json: (True,
    how well the graph matches) or (False, why the runs cannot be one graph). Runs of weight
    0 (ensemble selection leaves most at 0) add nothing to the fused scores and are left out
    of the graph."""
    import dataclasses

    from mmgenre import config as config_lib
    from mmgenre.files import save_model
    from mmgenre.models import registry
    from mmgenre.training.graph_check import FeatureMismatch, check_graph

    keep = [i for i, w in enumerate(weights) if w > 0]
    runs, members, weights = ([runs[i] for i in keep], [members[i] for i in keep],
                              [weights[i] for i in keep])
    try:
        models, size = _member_models(runs)
    except ValueError as err:
        _remove_fused_model(out_dir)
        print(f"score fusion: no fused model ({err}); the folder is a report", flush=True)
        return False, str(err)
    inputs = [m for m in ("poster", "overview") if any(m in model.input for model in models)]
    data_cfg = dataclasses.replace(data_cfg, image_size=list(size or data_cfg.image_size))
    params = {"inputs": inputs, "space": space, "weighting": weighting,
              "members": [os.path.abspath(run) for run in runs]}
    model = registry.build_model("score_fusion", {**params, "members": models},
                                 num_genres=len(prepared.vocab.genres),
                                 image_size=tuple(data_cfg.image_size))
    stats = [logit_statistics(m["dev"]) if space == "logit_z" else
             (np.zeros(len(prepared.vocab.genres)), np.ones(len(prepared.vocab.genres)))
             for m in members]
    model.get_layer("fusion").set_weights([np.stack([a for a, _ in stats]).astype("float32"),
                                           np.stack([b for _, b in stats]).astype("float32"),
                                           np.asarray(weights, "float32")])
    model.get_layer("genres").set_weights([c.astype("float32") for c in calibration])
    try:
        # Fed only the inputs the fused graph reads (the aligned data holds both).
        diff = check_graph(model, data_cfg, dataclasses.replace(prepared, modalities=tuple(inputs)),
                           dev_probs)
    except FeatureMismatch as err:
        _remove_fused_model(out_dir)
        print(f"score fusion: no fused model ({err})", flush=True)
        return False, f"the members' graphs do not reproduce their saved probabilities ({err})"
    cfg = config_lib.load_config(raw={
        "name": os.path.basename(os.path.normpath(out_dir)), "model": {
            "name": "score_fusion", "params": params},
        "evaluation": {"thresholds": threshold_rule}})
    cfg.data = data_cfg
    save_model(model, RunFolder(out_dir).model)
    config_lib.save_config(cfg, RunFolder(out_dir).config)
    prepared.vocab.to_json(RunFolder(out_dir).genres)
    return True, f"the graph matches the fused probabilities to {diff:.1e} on dev movies"


def _remove_fused_model(out_dir):
    """Removes the fused model an earlier fusion wrote here (``check_report_dir`` found the
    folder to be mmgenre's), so a report-only rerun leaves no stale model beside its report."""
    for path in (RunFolder(out_dir).model, RunFolder(out_dir).config, RunFolder(out_dir).genres):
        if os.path.exists(path):
            os.remove(path)
