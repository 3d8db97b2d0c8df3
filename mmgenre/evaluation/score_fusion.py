"""Score-level late fusion: a weighted average of two trained models' probabilities.

p = w * p_image + (1 - w) * p_text, with w picked on dev mean average precision
from a grid, then per-genre thresholds tuned on the fused dev probabilities.
Test never influences w or the thresholds.
"""

from __future__ import annotations

import os

import numpy as np

from mmgenre.evaluation.metrics import mean_average_precision

PROBABILITIES = "probabilities.npz"
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def choose_weight(dev_a: np.ndarray, dev_b: np.ndarray, dev_y: np.ndarray, grid=WEIGHT_GRID):
    """The weight of model a maximising dev mAP, and that mAP."""
    scores = [mean_average_precision(dev_y, w * dev_a + (1 - w) * dev_b) for w in grid]
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


def fuse(probs_a: dict, probs_b: dict, dev_y: np.ndarray):
    """{split: probs} x 2 -> ({split: fused probs}, weight of a)."""
    weight, _ = choose_weight(probs_a["dev"], probs_b["dev"], dev_y)
    return {s: weight * probs_a[s] + (1 - weight) * probs_b[s] for s in probs_a}, weight


def saved_probabilities(run_dir: str):
    """{split: (ids, (n, n_genres) probabilities)} and genres written by any run
    (Keras, classical, score fusion) through trainer.report_probabilities."""
    import json

    path = os.path.join(run_dir, PROBABILITIES)
    if not os.path.exists(path):
        raise ValueError(f"{run_dir}: no {PROBABILITIES}; runs write it since score fusion reads "
                         "saved probabilities; rerun the model in a new folder")
    saved = np.load(path, allow_pickle=False)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        genres = json.load(f)["genres"]
    return {s: (saved[f"{s}_ids"].tolist(), saved[s]) for s in ("dev", "test")}, genres


def run_score_fusion(image_run: str, text_run: str, out_dir: str, data_cfg=None) -> dict:
    """Fuses two runs' saved dev/test probabilities on the movies both scored.

    Either run may be a Keras model or a classical baseline. ``data_cfg`` (the
    dataset the runs used) defaults to the first run's config.yaml.
    """
    from mmgenre import config as config_lib
    from mmgenre.models.registry import ModelSpec
    from mmgenre.training import trainer

    (probs_a, genres_a), (probs_b, genres_b) = map(saved_probabilities, (image_run, text_run))
    if genres_a != genres_b:
        raise ValueError(f"{image_run} and {text_run} predict different genres "
                         f"({genres_a} vs {genres_b}); train both on the same data settings")
    if data_cfg is None:
        source = next((r for r in (image_run, text_run)
                       if os.path.exists(os.path.join(r, "config.yaml"))), None)
        if source is None:
            raise ValueError("neither run has a config.yaml; pass the data config")
        data_cfg = config_lib.load_config(os.path.join(source, "config.yaml")).data
    both = ModelSpec("score_fusion", None, ("poster", "overview"), "", accepts_missing=True)
    prepared = trainer.prepare_data(data_cfg, both, show_progress=False)
    if prepared.vocab.genres != genres_a:
        raise ValueError(f"{data_cfg.path} gives genres {prepared.vocab.genres}, the runs "
                         f"predict {genres_a}: not the dataset they were trained on")
    fused_in = ({}, {})
    # Align on movie id: a poster-only run and a text-only run may keep different rows.
    for split in ("dev", "test"):
        rows, targets = prepared.splits[split]
        index = [{movie: i for i, movie in enumerate(probs[split][0])} for probs in (probs_a, probs_b)]
        keep = [i for i, movie in enumerate(rows["id"]) if all(movie in ix for ix in index)]
        for probs, ix, out in zip((probs_a, probs_b), index, fused_in):
            out[split] = probs[split][1][[ix[rows["id"][i]] for i in keep]]
        prepared.splits[split] = (rows.iloc[keep].reset_index(drop=True), targets[keep])
    fused, weight = fuse(*fused_in, prepared.splits["dev"][1])
    name = f"score fusion ({os.path.basename(os.path.normpath(image_run))} + " \
           f"{os.path.basename(os.path.normpath(text_run))})"
    return trainer.report_probabilities(name, "score_fusion", data_cfg, prepared, fused,
                                        out_dir, extra={"image_weight": weight})
