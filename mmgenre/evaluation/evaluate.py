"""Scoring a trained model on prepared data and writing its tables, plots and report.

Every model's output goes through ``report_probabilities`` (Keras models via
``evaluate_prepared``, scikit-learn baselines, score fusion), so every row of
every table is computed the same way. Files are written atomically and the
folder's completion record (``mmgenre.runs``) last.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from mmgenre import config as config_lib
from mmgenre import runs, tasks
from mmgenre.data.prepare import PreparedData, make_split_dataset, takes_raw_text
from mmgenre.evaluation import metrics as metrics_lib
from mmgenre.evaluation import plots, reports
from mmgenre.models.fusion import gmu_gate


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
    probe = gmu_gate(model)
    if probe is None:
        return None
    z = probe.predict(make_split_dataset(data_cfg, prepared, split, raw_text=takes_raw_text(model)),
                      verbose=0)
    return {"poster": float(np.mean(z)), "overview": float(1.0 - np.mean(z))}


def evaluate_prepared(model, cfg, prepared: PreparedData, out_dir: str, thresholds=None,
                      splits=("dev", "test"), extra=None, train_oof=None) -> dict:
    """Scores ``model`` on ``splits`` and writes the run's tables and plots.

    Fused models (those accepting a missing modality) are also scored with each
    input absent, and GMU models report their mean gate. ``train_oof``: the
    run's saved out-of-fold train probabilities (cached-feature models).
    """
    probs = {s: predict_split(model, cfg.data, prepared, s) for s in splits
             if not prepared.splits[s][0].empty}
    extra = dict(extra or {})
    variants = {}
    if prepared.allow_missing and tasks.get(cfg.data.task).uses_thresholds:
        # Fused models, judged as a catalogue would meet them: one input absent.
        final = "test" if "test" in probs else next(iter(probs))
        variants = {f"{absent} missing": predict_split(model, cfg.data, prepared, final, absent)
                    for absent in prepared.modalities}
        extra["gmu_mean_gate"] = mean_gate(model, cfg.data, prepared, final)
    return report_probabilities(cfg.name, cfg.model.name, cfg.data, prepared, probs, out_dir,
                                thresholds, extra, variants, cfg.evaluation.thresholds, train_oof,
                                cfg.evaluation.threshold_split)


def _multilabel_section(results, truth, prob, genres, thresholds, threshold_rule, final, name,
                        out_dir):
    """(per-genre table, report lines) of a multi-label run."""
    per_genre = metrics_lib.per_genre_table(truth, prob, genres, thresholds)
    rule = ("the trained run's thresholds" if threshold_rule == "the trained run's"
            else f"thresholds chosen on {results.get('threshold_split', 'dev')} by rule "
                 f"{threshold_rule!r}")
    left_out = int((truth.sum(axis=0) == 0).sum())
    lines = [f"## Per-genre ({final}, {rule})", "",
             *([f"{left_out} genre(s) have no positive movie here; macro-F1 and mAP average "
                "over the others.", ""] if left_out else []),
             reports.to_markdown(per_genre), ""]
    return per_genre, lines


def _single_label_section(results, truth, prob, genres, thresholds, threshold_rule, final, name,
                          out_dir):
    """(per-genre table, report lines with the confusion matrix) of a single-label run;
    writes the confusion-matrix plot."""
    per_genre = metrics_lib.single_label_per_genre(truth, prob, genres)
    matrix = results["splits"][final]["single"]["confusion_matrix"]
    plots.confusion_matrix(matrix, genres, runs.RunFolder(out_dir).confusion_plot,
                           f"{name} on {final}")
    confusion = pd.DataFrame(matrix, columns=genres)
    confusion.insert(0, "true \\ predicted", genres)
    lines = [f"## Per-genre ({final}, argmax)", "", reports.to_markdown(per_genre), "",
             f"## Confusion matrix ({final}; rows true, columns predicted)", "",
             reports.to_markdown(confusion, ".0f"), "", "![confusion](confusion_matrix.png)", ""]
    return per_genre, lines


def score_splits(name, prepared: PreparedData, probs: dict, task: str, thresholds, by_rule: dict,
                 variants=None, chosen_on: str = "dev"):
    """Scores per-split probabilities (no files): ({"splits": ..., "missing_modality": ...},
    table rows), the train-frequency prior scored beside every split. ``chosen_on`` labels the
    rows at the chosen thresholds."""
    genres, train_targets = prepared.vocab.genres, prepared.splits["train"][1]
    out, rows = {"splits": {}}, []
    for split, prob in probs.items():
        truth = prepared.splits[split][1]
        split_metrics = metrics_lib.evaluate_split(truth, prob, task, genres, thresholds)
        out["splits"][split] = {"n": len(truth), **split_metrics}
        if by_rule:  # the threshold-rule ablation, free for every run
            out["splits"][split]["by_rule"] = {
                rule: metrics_lib.multilabel_metrics(truth, prob, t) for rule, t in by_rule.items()}
        rows += [{"split": split, **r} for r in reports.metrics_rows(name, split_metrics, chosen_on)]
        if len(train_targets):  # the constant train-frequency prior (single: the majority class)
            prior = metrics_lib.evaluate_split(
                truth, metrics_lib.prior_probabilities(train_targets, len(truth)), task, genres)
            out["splits"][split]["prior"] = prior.get("at_0.5", prior.get("single"))
            rows += [{"split": split, **r} for r in reports.metrics_rows("prior (train frequency)", prior)]
    final = "test" if "test" in probs else next(iter(probs))
    if variants:
        out["missing_modality"] = {}
        for label, prob in variants.items():
            scores = metrics_lib.evaluate_split(prepared.splits[final][1], prob, task, genres,
                                                thresholds)
            out["missing_modality"][label] = scores
            rows += [{"split": final, **r}
                     for r in reports.metrics_rows(f"{name} ({label})", scores, chosen_on)]
    return out, rows


def thresholds_by_rule(prepared: PreparedData, probs: dict, train_oof=None) -> dict:
    """{rule: per-genre thresholds} chosen on ``train_oof`` (out-of-fold train probabilities)
    when given, else on the dev probabilities (none without dev)."""
    y_train = prepared.splits["train"][1]
    if train_oof is not None:
        y, p = y_train, train_oof
    elif "dev" in probs:
        y, p = prepared.splits["dev"][1], probs["dev"]
    else:
        return {}
    return {rule: metrics_lib.choose_thresholds(rule, y, p, y_train)
            for rule in config_lib.THRESHOLD_RULES}


def save_probabilities(out_dir, prepared: PreparedData, probs: dict, train_oof=None):
    """probabilities.npz: each split's probabilities with its movie ids (score fusion aligns on
    them), and out-of-fold train probabilities where the model has them."""
    with runs.atomic_path(runs.RunFolder(out_dir).probabilities) as tmp:
        oof = {} if train_oof is None else {
            "train_oof": train_oof,
            "train_oof_ids": np.asarray(prepared.splits["train"][0]["id"], dtype=str)}
        np.savez(tmp, **{s: p for s, p in probs.items()},
                 **{f"{s}_ids": np.asarray(prepared.splits[s][0]["id"], dtype=str) for s in probs},
                 **oof)


def _notes(results, prepared: PreparedData, final: str) -> list:
    """Report lines after the tables: a GMU model's mean gate, the dropped genres."""
    lines = []
    if results.get("gmu_mean_gate"):
        gate = results["gmu_mean_gate"]
        lines += [f"GMU mean gate on {final}: poster {gate['poster']:.3f}, "
                  f"overview {gate['overview']:.3f}.", ""]
    if prepared.vocab.dropped:
        lines += ["Dropped genres: " + "; ".join(f"{g} ({why})" for g, why in
                                                prepared.vocab.dropped.items()), ""]
    return lines


def _save_thresholds(out_dir, genres, thresholds):
    runs.write_json(runs.RunFolder(out_dir).thresholds, dict(zip(genres, map(float, thresholds))))
    return thresholds


def _write_genre_files(out_dir, name, final, prepared, per_genre, prob, predicted):
    """The three files both tasks write: per-genre table, its plot, the error analysis of the
    (n, genres) bool ``predicted`` genres."""
    rows, truth = prepared.splits[final]
    runs.write_csv(per_genre, runs.RunFolder(out_dir).per_genre)
    plots.per_genre_f1(per_genre, runs.RunFolder(out_dir).per_genre_plot,
                       f"{name}: per-genre F1 on {final}")
    runs.write_text(runs.RunFolder(out_dir).errors,
                    f"# Error analysis: {name} on {final}\n\n"
                    + reports.error_analysis(rows, truth, prob, prepared.vocab.genres, predicted))


def report_probabilities(name, model_name, data_cfg, prepared: PreparedData, probs: dict,
                         out_dir: str, thresholds=None, extra=None, variants=None,
                         threshold_rule: str = config_lib.THRESHOLD_RULES[0], train_oof=None,
                         threshold_split: str = config_lib.THRESHOLD_SPLITS[0]) -> dict:
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
        train_oof: out-of-fold probabilities of the train rows (models fitted by
            cross-validation), saved for score fusion to choose weights on.
        threshold_split: "dev", or "train_oof" to choose the thresholds on ``train_oof``.
    """
    os.makedirs(out_dir, exist_ok=True)
    runs.clear_complete(out_dir)  # rewriting: not a finished result until the end
    genres, task = prepared.vocab.genres, data_cfg.task
    uses_thresholds = tasks.get(task).uses_thresholds
    if threshold_split == "train_oof" and train_oof is None:
        raise ValueError(f"{name}: evaluation.threshold_split 'train_oof' needs out-of-fold train "
                         "probabilities (linear_probe, encoder_head); use 'dev'")
    by_rule = (thresholds_by_rule(prepared, probs, train_oof if threshold_split == "train_oof"
                                  else None) if uses_thresholds else {})
    if thresholds is not None:
        threshold_rule = "the trained run's"  # its dev-chosen thresholds applied to new data
    elif uses_thresholds:
        thresholds = _save_thresholds(out_dir, genres, by_rule[threshold_rule])
    save_probabilities(out_dir, prepared, probs, train_oof)
    runs.record_dataset(out_dir, data_cfg.path, prepared.dataset_fingerprint)
    results = {"model": model_name, "name": name, "genres": genres, "task": task,
               "data_fingerprint": prepared.dataset_fingerprint, **(extra or {}),
               "threshold_rule": threshold_rule,
               **({"threshold_split": threshold_split} if threshold_rule != "the trained run's" else {})}
    splits, rows = score_splits(name, prepared, probs, task, thresholds, by_rule, variants,
                                threshold_split)
    results.update(splits)
    final = "test" if "test" in probs else next(iter(probs))
    table = pd.DataFrame(rows)
    runs.write_csv(table, runs.RunFolder(out_dir).metrics_table)
    runs.write_json(runs.RunFolder(out_dir).metrics, results)
    report = [f"# {name} ({model_name})", "",
              f"Dataset: `{data_cfg.path}`; inputs: {', '.join(prepared.modalities)}; "
              f"{len(genres)} genres; task: {task}.", "",
              reports.to_markdown(table), ""]
    truth, prob = prepared.splits[final][1], probs[final]
    section = _multilabel_section if uses_thresholds else _single_label_section
    per_genre, lines = section(results, truth, prob, genres, thresholds, threshold_rule, final,
                               name, out_dir)
    _write_genre_files(out_dir, name, final, prepared, per_genre, prob,
                       tasks.get(task).decide(prob, thresholds))
    report += lines + _notes(results, prepared, final)
    runs.write_text(runs.RunFolder(out_dir).report, "\n".join(report))
    runs.mark_complete(out_dir)  # last: the folder now holds a whole result
    return results
