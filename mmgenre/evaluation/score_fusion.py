"""Score-level late fusion: a weighted average of two trained models' probabilities.

p = w * p_image + (1 - w) * p_text, with w picked on dev mean average precision
from a grid, then per-genre thresholds tuned on the fused dev probabilities.
Test never influences w or the thresholds.
"""

from __future__ import annotations

import os

import numpy as np

from mmgenre.evaluation.metrics import mean_average_precision

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


def run_score_fusion(image_run: str, text_run: str, out_dir: str) -> dict:
    """Fuses two trained runs' dev/test probabilities on the movies both can score."""
    from mmgenre.inference import load_run
    from mmgenre.models import registry
    from mmgenre.training import trainer

    probs, prepared_by_run = [], []
    for run_dir in (image_run, text_run):
        run = load_run(run_dir)
        prepared = trainer.prepare_data(run.config.data, registry.get(run.config.model.name),
                                        vocab=run.vocab, vectorizer=run.vectorizer)
        probs.append({s: trainer.predict_split(run.model, run.config.data, prepared, s)
                      for s in ("dev", "test")})
        prepared_by_run.append((run, prepared))
    (run_a, prep_a), (_, prep_b) = prepared_by_run
    # Align on movie id: a poster-only run and a text-only run may keep different rows.
    for split in ("dev", "test"):
        ids_a = list(prep_a.splits[split][0]["id"])
        index_b = {movie: i for i, movie in enumerate(prep_b.splits[split][0]["id"])}
        keep = [i for i, movie in enumerate(ids_a) if movie in index_b]
        probs[0][split] = probs[0][split][keep]
        probs[1][split] = probs[1][split][[index_b[ids_a[i]] for i in keep]]
        rows, targets = prep_a.splits[split]
        prep_a.splits[split] = (rows.iloc[keep].reset_index(drop=True), targets[keep])
    fused, weight = fuse(probs[0], probs[1], prep_a.splits["dev"][1])
    prep_a.modalities = ("poster", "overview")
    name = f"score fusion ({os.path.basename(os.path.normpath(image_run))} + " \
           f"{os.path.basename(os.path.normpath(text_run))})"
    return trainer.report_probabilities(name, "score_fusion", run_a.config.data, prep_a, fused,
                                        out_dir, extra={"image_weight": weight})
