"""Batch prediction: a trained run over a dataset split -> predictions.csv.

Rows are read and checked like evaluation data (the run's own vocabulary,
vectorizer and bad-input policy; rows need no genres; a two-input model takes
rows with one), fed in overview-length order as evaluation does, and written as
one CSV: ``id``, one probability column per genre, and ``predicted`` (the
genres at or above the run's fitted thresholds, "|"-separated, most probable
first). Every check the data's table can answer runs before the model loads.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import pandas as pd

from mmgenre import files, runs, tasks
from mmgenre.evaluation.evaluate import predict_split
from mmgenre.inference import open_run, prepare_for_run, with_model


def predict_dataset(run_dir: str, data_path: str, out_csv: str, split: str | None = None,
                    allow_external_code: bool = False, batch_size: int | None = None,
                    overwrite: bool = False, bad_input: str | None = None, genre_map=None) -> dict:
    """Writes ``out_csv``; returns {"rows", "seconds", "movies_per_second", "out"}.

    ``split`` None predicts every split's rows; otherwise that split only. An existing
    ``out_csv`` is replaced only when it is an earlier prediction (its header) or ``overwrite``.
    """
    runs.check_output_file(out_csv, overwrite,
                           lambda header: header.startswith("id,split,") and header.endswith(",predicted"))
    run = open_run(run_dir)
    data_cfg, prepared = prepare_for_run(run, data_path, split, bad_input, genre_map,
                                         require_genres=False)
    data_cfg = dataclasses.replace(data_cfg, batch_size=batch_size or data_cfg.batch_size)
    splits = [split] if split else [s for s in prepared.splits if len(prepared.splits[s][0])]
    run = with_model(run, allow_external_code, prepared)
    frames, started, total = [], time.perf_counter(), 0
    for name in splits:
        rows = prepared.splits[name][0]
        probs = predict_split(run.model, data_cfg, prepared, name, show_progress=True)
        total += len(rows)
        on = tasks.get(data_cfg.task).decide(probs, run.threshold_values)
        order = np.argsort(-probs, axis=1)
        predicted = ["|".join(run.vocab.genres[g] for g in row if flags[g])
                     for row, flags in zip(order, on)]
        frame = pd.DataFrame(probs, columns=run.vocab.genres)
        frame.insert(0, "id", list(rows["id"]))
        frame.insert(1, "split", name)
        frame["predicted"] = predicted
        frames.append(frame)
    seconds = time.perf_counter() - started
    files.write_csv(pd.concat(frames, ignore_index=True), out_csv)
    speed = total / seconds if seconds else float("inf")
    print(f"{total} movies in {seconds:.1f} s ({speed:.0f} movies/s) -> {out_csv}", file=sys.stderr)
    return {"rows": total, "seconds": seconds, "movies_per_second": speed, "out": out_csv}
