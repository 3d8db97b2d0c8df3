"""Scoring a trained model on prepared data and writing its tables, plots and report.

Every model's output goes through ``report_probabilities`` (Keras models via
``evaluate_prepared``, scikit-learn baselines, score fusion), so every row of
every table is computed the same way. Files are written atomically and the
folder's completion record (``mmgenre.runs``) last.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from mmgenre import files, runs, tasks
from mmgenre.data.prepare import PreparedData, make_split_dataset, takes_raw_text
from mmgenre.decisions import Thresholds
from mmgenre.evaluation import metrics as metrics_lib
from mmgenre.evaluation import plots, reports
from mmgenre.models.fusion import gmu_gate
from mmgenre.models.predict_step import batch_predictor
from mmgenre.progress import progress


def length_order(rows, modalities, raw_text: bool):
    """Row order by overview length, shortest first, or None when it would not help.

    A model that tokenizes inside its graph cuts each batch to its longest
    overview (``backbones.text_encoder_backbone``); fed in length order, batches
    hold overviews of similar length and padding costs little (the embedding
    pass buckets the same way: 3x faster than fixed 256-token padding here)."""
    if not raw_text or "overview" not in modalities:
        return None
    lengths = [len(t) if isinstance(t, str) else 0 for t in rows["overview"]]
    return np.argsort(lengths, kind="stable")


def predict_split(model, data_cfg, prepared: PreparedData, split, absent=None,
                  show_progress: bool = False) -> np.ndarray:
    """(n, n_genres) probabilities in ``prepared.splits[split]`` order; ``absent`` names a
    modality to blank out (the absent signal of fused models) to measure robustness.

    Overviews go in length order (``length_order``) and come back in row order;
    ``show_progress`` draws movies/s and time left."""
    rows, targets = prepared.splits[split]
    raw_text = takes_raw_text(model)
    order = length_order(rows, prepared.modalities, raw_text and absent != "overview")
    view = prepared
    if order is not None:
        view = dataclasses.replace(prepared, splits={
            **prepared.splits, split: (rows.iloc[order].reset_index(drop=True), targets[order])})
    ds = make_split_dataset(data_cfg, view, split, raw_text=raw_text)
    if absent is not None:
        import tensorflow as tf

        ds = ds.map(lambda x, y: ({**x, absent: tf.zeros_like(x[absent])}, y))
    batches = (x for x, _ in ds)
    if show_progress:
        steps = -(-len(rows) // data_cfg.batch_size)
        batches = progress(batches, steps, f"scoring {split} ({len(rows)} movies)", unit="movies",
                           per_step=data_cfg.batch_size, items=len(rows))
    # Batch by batch (model.predict hides the batches, so no progress could be drawn).
    predict = batch_predictor(model, ds.element_spec[0])
    probs = np.concatenate([np.asarray(predict(x)) for x in batches])
    if order is None:
        return probs
    restored = np.empty_like(probs)
    restored[order] = probs
    return restored


def mean_gate(model, data_cfg, prepared, split) -> dict | None:
    """Mean GMU gate on ``split``: how much each modality contributes on average."""
    probe = gmu_gate(model)
    if probe is None:
        return None
    z = probe.predict(make_split_dataset(data_cfg, prepared, split, raw_text=takes_raw_text(model)),
                      verbose=0)
    return {"poster": float(np.mean(z)), "overview": float(1.0 - np.mean(z))}


def evaluate_prepared(model, cfg, prepared: PreparedData, out_dir: str, thresholds: Thresholds | None,
                      splits=("dev", "test"), extra=None, train_oof=None, probs=None, prior=None,
                      show_progress: bool = False, robustness: bool = True) -> dict:
    """Scores ``model`` on ``splits`` at the given (fitted) ``thresholds`` and writes the
    run's tables and plots.

    Fused models (those accepting a missing modality) are also scored with each
    input absent, and GMU models report their mean gate. ``probs``: the splits'
    probabilities when the caller has them already; ``train_oof``: the run's
    out-of-fold train probabilities (cached-feature models), saved beside them;
    ``prior``: (n_genres,) train frequencies of the run (default: this data's train split);
    ``robustness`` False skips the missing-input rows (two more passes over the data).
    """
    probs = probs or predict_splits(model, cfg.data, prepared, splits, show_progress)
    extra = dict(extra or {})
    variants = {}
    if robustness and prepared.allow_missing and tasks.get(cfg.data.task).uses_thresholds:
        # Fused models, judged as a catalogue would meet them: one input absent.
        final = "test" if "test" in probs else next(iter(probs))
        variants = {f"{absent} missing": predict_split(model, cfg.data, prepared, final, absent)
                    for absent in prepared.modalities}
        extra["gmu_mean_gate"] = mean_gate(model, cfg.data, prepared, final)
    return report_probabilities(cfg.name, cfg.model.name, cfg.data, prepared, probs, out_dir,
                                thresholds, extra, variants, train_oof, prior)


def predict_splits(model, data_cfg, prepared: PreparedData, splits, show_progress=False) -> dict:
    """{split: (n, n_genres) probabilities} of every split in ``splits`` that has rows."""
    return {s: predict_split(model, data_cfg, prepared, s, show_progress=show_progress)
            for s in splits if not prepared.splits[s][0].empty}


def _multilabel_section(truth, prob, genres, thresholds: Thresholds, final):
    """(per-genre table, report lines) of a multi-label run."""
    per_genre = metrics_lib.per_genre_table(truth, prob, genres, thresholds.values)
    left_out = [g for g, n in zip(genres, truth.sum(axis=0)) if n == 0]
    lines = [f"## Per-genre ({final}, {thresholds.describe()})", "",
             *([f"{len(left_out)} genre(s) have no positive movie here and are left out of "
                f"macro-F1 and mAP: {', '.join(left_out)}.", ""] if left_out else []),
             reports.to_markdown(per_genre), ""]
    return per_genre, lines


def _single_label_section(results, truth, prob, genres, final):
    """(per-genre table, report lines with the confusion matrix) of a single-label run;
    the caller writes the confusion-matrix plot."""
    per_genre = metrics_lib.single_label_per_genre(truth, prob, genres)
    matrix = results["splits"][final]["single"]["confusion_matrix"]
    confusion = pd.DataFrame(matrix, columns=genres)
    confusion.insert(0, "true \\ predicted", genres)
    lines = [f"## Per-genre ({final}, argmax)", "", reports.to_markdown(per_genre), "",
             f"## Confusion matrix ({final}; rows true, columns predicted)", "",
             reports.to_markdown(confusion, ".0f"), "", "![confusion](confusion_matrix.png)", ""]
    return per_genre, lines


def train_frequencies(prepared: PreparedData):
    """(n_genres,) share of this data's train movies carrying each genre, or None without train."""
    targets = prepared.splits["train"][1]
    return np.asarray(targets).mean(axis=0) if len(targets) else None


def score_splits(name, prepared: PreparedData, probs: dict, task: str,
                 thresholds: Thresholds | None, variants=None, prior=None):
    """Scores per-split probabilities (no files): ({"splits": ..., "missing_modality": ...},
    table rows), the constant train-frequency ``prior`` ((n_genres,), the run's) scored beside
    every split."""
    genres = prepared.vocab.genres
    values = thresholds.values if thresholds is not None else None
    chosen_on = thresholds.chosen_on if thresholds is not None else "dev"
    out, rows = {"splits": {}}, []
    for split, prob in probs.items():
        truth = prepared.splits[split][1]
        split_metrics = metrics_lib.evaluate_split(truth, prob, task, genres, values)
        out["splits"][split] = {"n": len(truth), **split_metrics}
        if thresholds is not None and thresholds.by_rule:  # the threshold-rule ablation
            out["splits"][split]["by_rule"] = {
                rule: metrics_lib.multilabel_metrics(truth, prob, t)
                for rule, t in thresholds.by_rule.items()}
        rows += [{"split": split, **r} for r in reports.metrics_rows(name, split_metrics, chosen_on)]
        if prior is not None:  # the constant train-frequency prior (single: the majority class)
            scores = metrics_lib.evaluate_split(
                truth, metrics_lib.prior_probabilities(prior, len(truth)), task, genres)
            out["splits"][split]["prior"] = scores.get("at_0.5", scores.get("single"))
            rows += [{"split": split, **r} for r in reports.metrics_rows("prior (train frequency)", scores)]
    final = "test" if "test" in probs else next(iter(probs))
    if variants:
        out["missing_modality"] = {}
        for label, prob in variants.items():
            scores = metrics_lib.evaluate_split(prepared.splits[final][1], prob, task, genres, values)
            out["missing_modality"][label] = scores
            rows += [{"split": final, **r}
                     for r in reports.metrics_rows(f"{name} ({label})", scores, chosen_on)]
    return out, rows


def save_probabilities(out_dir, prepared: PreparedData, probs: dict, train_oof=None):
    """probabilities.npz: each split's probabilities with its movie ids (score fusion aligns on
    them), and out-of-fold train probabilities where the model has them."""
    with files.atomic_path(runs.RunFolder(out_dir).probabilities) as tmp:
        oof = {} if train_oof is None else {
            "train_oof": train_oof,
            "train_oof_ids": np.asarray(prepared.splits["train"][0]["id"], dtype=str)}
        np.savez(tmp, **{s: p for s, p in probs.items()},
                 **{f"{s}_ids": np.asarray(prepared.splits[s][0]["id"], dtype=str) for s in probs},
                 **oof)


def _notes(results, prepared: PreparedData, final: str) -> list:
    """Report lines after the tables: a GMU model's mean gate, the dropped genres, how the
    data's genres and inputs met the run's."""
    lines = []
    if results.get("gmu_mean_gate"):
        gate = results["gmu_mean_gate"]
        lines += [f"GMU mean gate on {final}: poster {gate['poster']:.3f}, "
                  f"overview {gate['overview']:.3f}.", ""]
    if prepared.vocab.dropped and prepared.genre_mapping is None:
        lines += ["Dropped genres: " + "; ".join(f"{g} ({why})" for g, why in
                                                prepared.vocab.dropped.items()), ""]
    mapping = prepared.genre_mapping
    if mapping is not None:
        lines += [f"Genres scored (the run's genres this data lists): {', '.join(mapping.shared)}.", ""]
        if mapping.renamed:
            lines += ["Spellings mapped onto the run's genres: " + "; ".join(
                f"{a} -> {b}" for a, b in mapping.renamed.items()) + ".", ""]
        if mapping.ignored:
            lines += ["Genres the run never learned (ignored): " + "; ".join(
                f"{g} ({n} movies)" for g, n in mapping.ignored.items()) + ".", ""]
    if prepared.inputs.get("stand_in"):
        lines += [f"Rows scored without one input: {prepared.inputs['stand_in']} "
                  "(the model got its absent signal: a black poster or an empty overview).", ""]
    if prepared.inputs.get("skipped_without_input"):
        lines += [f"Rows skipped for lacking the model's input(s) {list(prepared.modalities)}: "
                  f"{prepared.inputs['skipped_without_input']}.", ""]
    return lines


def _write_genre_files(out_dir, name, final, prepared, per_genre, prob, predicted):
    """The three files both tasks write: per-genre table, its plot, the error analysis of the
    (n, genres) bool ``predicted`` genres."""
    rows, truth = prepared.splits[final]
    files.write_csv(per_genre, runs.RunFolder(out_dir).per_genre)
    plots.per_genre_f1(per_genre, runs.RunFolder(out_dir).per_genre_plot,
                       f"{name}: per-genre F1 on {final}")
    files.write_text(runs.RunFolder(out_dir).errors,
                    f"# Error analysis: {name} on {final}\n\n"
                    + reports.error_analysis(rows, truth, prob, prepared.vocab.genres, predicted))


def report_probabilities(name, model_name, data_cfg, prepared: PreparedData, probs: dict,
                         out_dir: str, thresholds: Thresholds | None, extra=None, variants=None,
                         train_oof=None, prior=None) -> dict:
    """Metrics, tables, plots and error analysis from per-split probabilities.

    Any model's output goes through here (Keras, scikit-learn baselines, score
    fusion), so every row of every table is computed the same way. Nothing is
    fitted here: the thresholds are the run's, fitted in training (thresholds.json).

    Args:
        probs: {split: (n, n_genres) probabilities aligned with prepared.splits}.
        thresholds: the run's fitted thresholds (None for single-label runs); the
            metrics under every rule it recorded (``by_rule``) are reported too.
        variants: {label: probabilities on the final split} scored as extra rows
            (e.g. a fused model with its poster missing).
        train_oof: out-of-fold probabilities of the train rows (models fitted by
            cross-validation), saved for score fusion to choose weights on.
        prior: (n_genres,) the run's train frequencies for the prior row (default:
            this data's train split; none without one).
    """
    os.makedirs(out_dir, exist_ok=True)
    runs.clear_complete(out_dir)  # rewriting: not a finished result until the end
    genres, task = prepared.vocab.genres, data_cfg.task
    if tasks.get(task).uses_thresholds and thresholds is None:
        raise ValueError(f"{name}: a multi-label run is scored at thresholds fitted in training")
    prior = train_frequencies(prepared) if prior is None else prior
    save_probabilities(out_dir, prepared, probs, train_oof)
    runs.record_dataset(out_dir, data_cfg.path, prepared.dataset_fingerprint)
    results = {"model": model_name, "name": name, "genres": genres, "task": task,
               "data_fingerprint": prepared.dataset_fingerprint, **(extra or {}),
               **({"threshold_rule": thresholds.rule, "threshold_split": thresholds.chosen_on,
                   "thresholds_fitted": "in training"} if thresholds is not None else {}),
               **({"genre_mapping": prepared.genre_mapping.as_dict()}
                  if prepared.genre_mapping is not None else {}),
               **({"inputs": dict(prepared.inputs)} if prepared.inputs else {})}
    splits, rows = score_splits(name, prepared, probs, task, thresholds, variants, prior)
    results.update(splits)
    final = "test" if "test" in probs else next(iter(probs))
    truth, prob = prepared.splits[final][1], probs[final]
    results["genres_without_positives"] = [g for g, n in zip(genres, truth.sum(axis=0)) if n == 0]
    table = pd.DataFrame(rows)
    files.write_csv(table, runs.RunFolder(out_dir).metrics_table)
    files.write_json(runs.RunFolder(out_dir).metrics, results)
    report = [f"# {name} ({model_name})", "",
              f"Dataset: `{data_cfg.path}`; inputs: {', '.join(prepared.modalities)}; "
              f"{len(genres)} genres; task: {task}.", "",
              reports.to_markdown(table), ""]
    if tasks.get(task).uses_thresholds:
        per_genre, lines = _multilabel_section(truth, prob, genres, thresholds, final)
    else:
        per_genre, lines = _single_label_section(results, truth, prob, genres, final)
        plots.confusion_matrix(results["splits"][final]["single"]["confusion_matrix"], genres,
                               runs.RunFolder(out_dir).confusion_plot, f"{name} on {final}")
    _write_genre_files(out_dir, name, final, prepared, per_genre, prob,
                       tasks.get(task).decide(prob, None if thresholds is None else thresholds.values))
    report += lines + _notes(results, prepared, final)
    files.write_text(runs.RunFolder(out_dir).report, "\n".join(report))
    runs.mark_complete(out_dir)  # last: the folder now holds a whole result
    return results
