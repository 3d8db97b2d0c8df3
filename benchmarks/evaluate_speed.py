"""`mmgenre evaluate` against the embedding pass over the same long overviews, one process.

    python benchmarks/evaluate_speed.py \
        --run runs/headline_large/tfidf_mpnet_efficientnet_lite0_probe-seed0 --n 2000 \
        --out results/evaluate_speed

Writes a test-only dataset under ``--workdir``: ``--n`` movies of
``--data`` (any split), each overview the movie's own followed by the next
movies' until it reaches ``--chars`` characters (about 200 MPNet tokens at the
default 930: MM-IMDb-length plots), its poster copied in (a dataset's files
are read from inside it). Then, in this process and in this order:

1. ``embed_texts`` of those overviews with the run's text encoder (batches bucketed by
   length, the run's batch size; the encoder warmed up first);
2. ``evaluate_run`` of the run on that dataset (loading, checks, every backbone of the
   graph: TF-IDF, the text encoder, the poster encoder, and the report);
3. with ``--unsorted``, the same evaluation with overviews in file order (how it ran before
   evaluation bucketed them), for the ratio bucketing buys.

The target: evaluation <= 1.5x the embedding pass. Writes OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import pandas as pd  # noqa: E402

from mmgenre import runs as runs_lib  # noqa: E402
from mmgenre.data.records import load_records  # noqa: E402
from mmgenre.encoders.text import embed_texts  # noqa: E402
from mmgenre.evaluation import evaluate, reports  # noqa: E402
from mmgenre.inference import evaluate_run, open_run  # noqa: E402


def long_overview_dataset(data: str, out: str, n: int, chars: int) -> str:
    """Writes ``out/movies.csv`` (+ posters/): ``n`` test movies with overviews of at least
    ``chars`` characters."""
    table = load_records(data)
    table = table[table["overview"].map(lambda t: isinstance(t, str) and bool(t.strip()))
                  & table["poster"].map(lambda p: isinstance(p, str) and os.path.isfile(p))]
    table = table.reset_index(drop=True)
    os.makedirs(os.path.join(out, "posters"), exist_ok=True)
    rows = []
    for i in range(min(n, len(table))):
        text, j = table.at[i, "overview"], i
        while len(text) < chars:
            j = (j + 1) % len(table)
            text += " " + table.at[j, "overview"]
        poster = os.path.join("posters", f"{table.at[i, 'id']}{os.path.splitext(table.at[i, 'poster'])[1]}")
        if not os.path.exists(os.path.join(out, poster)):
            shutil.copyfile(table.at[i, "poster"], os.path.join(out, poster))
        rows.append({"id": table.at[i, "id"], "title": "", "split": "test", "poster": poster,
                     "overview": text, "genres": "|".join(table.at[i, "genres"])})
    runs_lib.write_csv(pd.DataFrame(rows), os.path.join(out, "movies.csv"))
    return out


def text_encoder(run) -> str:
    features = run.config.model.params.get("features", [])
    names = [f for f in features if f in ("mpnet", "minilm")]
    if not names:
        raise ValueError(f"{run.path}: no MPNet or MiniLM feature to compare with")
    return names[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", default="../shared/datasets/posters-overviews-large")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chars", type=int, default=930)
    parser.add_argument("--unsorted", action="store_true", help="also time evaluation in file order")
    parser.add_argument("--workdir", default="runs/evaluate_speed")
    parser.add_argument("--out", default="results/evaluate_speed")
    args = parser.parse_args(argv)
    command = "python benchmarks/evaluate_speed.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    data = long_overview_dataset(args.data, os.path.join(args.workdir, "data"), args.n, args.chars)
    texts = list(pd.read_csv(os.path.join(data, "movies.csv"))["overview"])
    run = open_run(args.run)
    name, batch = text_encoder(run), run.config.data.batch_size
    embed_texts(name, texts[:8], batch, show_progress=False)  # load and trace once
    started = time.perf_counter()
    embed_texts(name, texts, batch)
    embed_seconds = time.perf_counter() - started
    rows = [{"step": f"embed_texts({name!r}), bucketed by length, batch {batch}",
             "seconds": embed_seconds, "movies/s": len(texts) / embed_seconds, "x embed": 1.0}]
    orders = [("evaluate (overviews in length order)", evaluate.length_order)]
    if args.unsorted:
        orders.append(("evaluate (overviews in file order, as before)", lambda *a, **k: None))
    real = evaluate.length_order
    for label, order in orders:
        evaluate.length_order = order
        try:
            started = time.perf_counter()
            results = evaluate_run(args.run, data, "test", out_dir=os.path.join(args.workdir, "eval"))
            seconds = time.perf_counter() - started
        finally:
            evaluate.length_order = real
        rows.append({"step": f"{label}: {results['splits']['test']['n']} movies, whole run graph",
                     "seconds": seconds, "movies/s": len(texts) / seconds,
                     "x embed": seconds / embed_seconds})
    frame = pd.DataFrame(rows)
    mean_chars = sum(map(len, texts)) / len(texts)
    lines = ["# `mmgenre evaluate` against the embedding pass over the same overviews", "",
             reports.provenance(command), "",
             f"{len(texts)} test movies, overviews of {mean_chars:.0f} characters on average; run "
             f"`{args.run}` (its graph: {', '.join(run.config.model.params.get('features', []))}). "
             "Evaluation includes loading the run, checking the data, every backbone of the graph "
             "(the poster encoder too) and writing the report. Target: <= 1.5x the embedding pass.", "",
             reports.to_markdown(frame, ".2f"), ""]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    runs_lib.write_csv(frame, args.out + ".csv")
    runs_lib.write_text(args.out + ".md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
