"""Runs scored on data they were not trained on: another catalogue's genres, or one input only.

    python benchmarks/transfer.py \
        --poster-runs runs/headline_large/efficientnet_lite0_probe-seed0 \
        --poster-data ../shared/datasets/posters-movielens \
        --text-runs runs/headline_large/{tfidf,minilm,mpnet,tfidf_mpnet}_probe-seed0 \
                    runs/headline_large/tfidf_mpnet_efficientnet_lite0_probe-seed0 \
        --text-data ../shared/datasets/posters-overviews-large \
        --bootstrap 1000 --out results/transfer

Two tables, each through ``mmgenre evaluate``'s own code (``inference.evaluate_run``):
the run's thresholds and calibration, nothing refitted on the new data.

1. Poster rows on ``--poster-data``'s test split (posters-movielens: MovieLens genre names,
   e.g. Sci-Fi, Children, Musical), mapped onto the run's genres by mmgenre.genres.
2. Text rows (and fused rows, through their missing-poster path) on a text-only copy of
   ``--text-data``'s test split that this script writes under ``--workdir``: only the test
   rows, no poster column values, genres respelled the IMDb way (Science Fiction -> Sci-Fi).

Each row: movies scored, genres shared, test mAP and macro-F1 over the shared genres with a
95% bootstrap interval over movies for mAP, the run's train prior on the same movies, and the
data's genres the run never learned. Writes OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from intervals import paired_bootstrap  # noqa: E402

from mmgenre import runs as runs_lib  # noqa: E402
from mmgenre.data.records import load_records  # noqa: E402
from mmgenre.evaluation import reports  # noqa: E402
from mmgenre.inference import evaluate_run, open_run, prepare_for_run  # noqa: E402

IMDB_SPELLING = {"Science Fiction": "Sci-Fi"}


def text_only_copy(data: str, out: str, split: str = "test") -> str:
    """Writes ``out/movies.csv``: ``data``'s ``split`` rows with no poster and IMDb genre
    spellings (a new catalogue's text-only test set); nothing else is copied."""
    table = load_records(data)
    rows = table[table["split"] == split]
    os.makedirs(out, exist_ok=True)
    frame = pd.DataFrame({
        "id": rows["id"], "title": rows.get("title", ""), "split": split, "poster": "",
        "overview": rows["overview"],
        "genres": ["|".join(IMDB_SPELLING.get(g, g) for g in genres) for genres in rows["genres"]]})
    runs_lib.write_csv(frame, os.path.join(out, "movies.csv"))
    return out


def score(run_dir: str, data: str, split: str, out_dir: str, resamples: int) -> dict:
    """One table row: the run evaluated on ``data``'s ``split`` with a bootstrap interval."""
    results = evaluate_run(run_dir, data, split, out_dir=out_dir)
    mapping, test = results["genre_mapping"], results["splits"][split]
    with np.load(runs_lib.RunFolder(out_dir).probabilities) as saved:
        probs = saved[split]
    genres = results["genres"]
    keep = [genres.index(g) for g in mapping["shared"]]
    # Targets of the scored movies (the same rows, in the same order, evaluate scored).
    run = open_run(run_dir)
    _, prepared = prepare_for_run(run, data, split)
    truth = prepared.splits[split][1][:, keep]
    run_prior = run.prior
    scores = {"run": probs[:, keep]}
    if run_prior is not None:
        scores["prior"] = np.tile(run_prior[keep], (len(truth), 1))
    interval = paired_bootstrap(truth, scores, resamples=resamples)
    return {"run": os.path.basename(os.path.normpath(run_dir)), "movies": test["n"],
            "stand-in input": results["inputs"].get("stand_in", 0),
            "genres shared": len(mapping["shared"]),
            "test mAP": interval["run"][0], "mAP low": interval["run"][1],
            "mAP high": interval["run"][2], "macro-F1": test["tuned"]["macro_f1"],
            "micro-F1": test["tuned"]["micro_f1"],
            "prior mAP": interval["prior"][0] if "prior" in interval else float("nan"),
            "renamed": "; ".join(f"{a}->{b}" for a, b in mapping["renamed"].items()),
            "never learned (movies)": "; ".join(f"{g} ({n})" for g, n in mapping["ignored"].items()),
            "without positives": ", ".join(results["genres_without_positives"])}


def section(title: str, rows: list) -> list:
    frame = pd.DataFrame(rows)
    shown = frame.assign(**{"test mAP [95%]": [
        f"{r['test mAP']:.3f} [{r['mAP low']:.3f}, {r['mAP high']:.3f}]" for _, r in frame.iterrows()]})
    columns = ["run", "movies", "stand-in input", "genres shared", "test mAP [95%]", "macro-F1",
               "micro-F1", "prior mAP"]
    lines = [f"## {title}", "", reports.to_markdown(shown[columns]), ""]
    first = rows[0]
    lines += [f"Spellings mapped: {first['renamed'] or 'none'}.",
              "Genres of the data no run learned (ignored, movies): "
              f"{first['never learned (movies)'] or 'none'}.",
              f"Run genres without a positive here (left out of mAP and macro-F1): "
              f"{first['without positives'] or 'none'}.", ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poster-runs", nargs="*", default=[])
    parser.add_argument("--poster-data", default="../shared/datasets/posters-movielens")
    parser.add_argument("--text-runs", nargs="*", default=[])
    parser.add_argument("--text-data", default="../shared/datasets/posters-overviews-large")
    parser.add_argument("--split", default="test")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workdir", default="runs/transfer")
    parser.add_argument("--out", default="results/transfer")
    args = parser.parse_args(argv)
    command = "python benchmarks/transfer.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    lines = ["# Runs scored on data they were not trained on", "", reports.provenance(command), "",
             "Every row is `mmgenre evaluate RUN --data DATA` (the run's fitted thresholds and "
             "calibration; nothing refitted), scored over the genres the run and the data share; "
             "mAP intervals are 95% bootstrap intervals over movies; the prior is the run's own "
             "train frequency on the same movies.", ""]
    table = []
    if args.poster_runs:
        name = os.path.basename(os.path.normpath(args.poster_data))
        rows = [score(r, args.poster_data, args.split, os.path.join(args.workdir, "poster", os.path.basename(
            os.path.normpath(r))), args.bootstrap) for r in args.poster_runs]
        lines += section(f"Poster runs on {name} ({args.split} split, its own genre names)", rows)
        table += [{"table": "poster", **r} for r in rows]
    if args.text_runs:
        copy = text_only_copy(args.text_data, os.path.join(args.workdir, "text-only-data"), args.split)
        name = os.path.basename(os.path.normpath(args.text_data))
        rows = [score(r, copy, args.split, os.path.join(args.workdir, "text", os.path.basename(
            os.path.normpath(r))), args.bootstrap) for r in args.text_runs]
        lines += section(f"Text and fused runs on a text-only copy of {name}'s {args.split} split "
                         "(no posters, IMDb genre spellings)", rows)
        table += [{"table": "text-only", **r} for r in rows]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    runs_lib.write_csv(pd.DataFrame(table), args.out + ".csv")
    runs_lib.write_text(args.out + ".md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
