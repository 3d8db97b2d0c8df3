"""Readers of the scores finished runs saved (probabilities.npz): score fusion fits on them,
benchmarks re-score them; nothing here fits or writes."""

from __future__ import annotations

import os

import numpy as np

from mmgenre.files import read_json
from mmgenre.runs import PROBABILITIES, RunFolder, dataset_path, require_complete


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
    task = metrics.get("task")
    splits = [s for s in ("dev", "test", "train_oof") if s in saved]
    return ({s: (saved[f"{s}_ids"].tolist(), saved[s]) for s in splits}, metrics.get("genres"), task)


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
    prepared = prepare.prepare_data(data_cfg, prepare.Inputs(("poster", "overview"), accepts_missing=True),
                                    show_progress=False)
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
