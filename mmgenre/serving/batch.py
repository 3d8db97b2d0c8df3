"""Batch prediction: a trained run over a dataset split -> predictions.csv.

Rows are read and checked like training data (the run's own vocabulary,
vectorizer and bad-input policy; rows need no genres), fed through the same
tf.data pipeline, and written as one CSV: ``id``, one probability column per
genre, and ``predicted`` (the genres at or above the run's dev-chosen
thresholds, "|"-separated, most probable first).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from mmgenre import runs, tasks
from mmgenre.data.prepare import make_split_dataset, prepare_data, takes_raw_text
from mmgenre.inference import load_run
from mmgenre.progress import progress


def predict_dataset(run_dir: str, data_path: str, out_csv: str, split: str | None = None,
                    allow_external_code: bool = False, batch_size: int | None = None,
                    overwrite: bool = False) -> dict:
    """Writes ``out_csv``; returns {"rows", "seconds", "movies_per_second", "out"}.

    ``split`` None predicts every split's rows; otherwise that split only. An existing
    ``out_csv`` is replaced only when it is an earlier prediction (its header) or ``overwrite``.
    """
    runs.check_output_file(out_csv, overwrite,
                           lambda header: header.startswith("id,split,") and header.endswith(",predicted"))
    run = load_run(run_dir, allow_external_code)
    cfg = run.config
    cfg.data.path, cfg.data.limit = data_path, None
    cfg.data.batch_size = batch_size or cfg.data.batch_size
    prepared = prepare_data(cfg.data, run.spec, vocab=run.vocab, vectorizer=run.vectorizer,
                            require_genres=False)
    splits = [split] if split else [s for s in prepared.splits if len(prepared.splits[s][0])]
    thresholds = run.thresholds if run.thresholds is not None else np.full(len(run.vocab), 0.5)
    frames, started, total = [], time.perf_counter(), 0
    for name in splits:
        rows = prepared.splits[name][0]
        if rows.empty:
            raise ValueError(f"{data_path}: split {name!r} has no usable rows for inputs "
                             f"{list(run.modalities)}")
        ds = make_split_dataset(cfg.data, prepared, name, raw_text=takes_raw_text(run.model))
        steps = -(-len(rows) // cfg.data.batch_size)
        batches = progress((x for x, _ in ds), steps, f"predicting {name} ({len(rows)} movies)")
        probs = np.concatenate([np.asarray(run.model.predict_on_batch(x)) for x in batches])
        total += len(rows)
        on = tasks.get(cfg.data.task).decide(probs, thresholds)
        order = np.argsort(-probs, axis=1)
        predicted = ["|".join(run.vocab.genres[g] for g in row if flags[g])
                     for row, flags in zip(order, on)]
        frame = pd.DataFrame(probs, columns=run.vocab.genres)
        frame.insert(0, "id", list(rows["id"]))
        frame.insert(1, "split", name)
        frame["predicted"] = predicted
        frames.append(frame)
    seconds = time.perf_counter() - started
    runs.write_csv(pd.concat(frames, ignore_index=True), out_csv)
    speed = total / seconds if seconds else float("inf")
    print(f"{total} movies in {seconds:.1f} s ({speed:.0f} movies/s) -> {out_csv}", file=sys.stderr)
    return {"rows": total, "seconds": seconds, "movies_per_second": speed, "out": out_csv}
