"""Learning curves: would more data pay?

Poster branch: pretrain the compact ResNet on N posters of posters-movielens' train split
(one pretraining per N, seed 0: it is the expensive part), freeze it and train a new genre
head on the paired set (cached features, every seed). N=0 is the same branch trained from
scratch on the paired set's posters alone.

Text branch: the wide bag-of-words branch and TF-IDF + logistic regression trained on the
first N overviews of one fixed shuffle of the paired train split (data.train_limit: nested
subsets, the same for every seed).

    python benchmarks/learning_curve.py --posters 0 1000 2500 5000 all --texts 250 500 750 all \
        --seeds 0 1 2 --out results/learning_curve
    python benchmarks/learning_curve.py --quick          # minutes-long harness check

Scores are on the paired test split (thresholds chosen on dev by the default rule); "all" means the
whole train split.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import common  # noqa: E402  (benchmarks/common.py: benchmark-only tables and plots)
import pandas as pd  # noqa: E402
from classical import run_classical  # noqa: E402  (benchmarks/classical.py)

from mmgenre import files  # noqa: E402
from mmgenre.config import load_config  # noqa: E402
from mmgenre.evaluation import reports  # noqa: E402
from mmgenre.training.trainer import train_and_evaluate  # noqa: E402

METRICS = ["macro_f1", "mAP", "micro_f1"]


def size(value: str):
    return None if value == "all" else int(value)


def train_rows(run_dir) -> int:
    with open(os.path.join(run_dir, "validation.json"), encoding="utf-8") as f:
        return json.load(f)["rows_per_split"]["train"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", nargs="*", type=size, default=[0, 1000, 2500, 5000, None],
                        help="posters-movielens train posters to pretrain on (0: none; all)")
    parser.add_argument("--texts", nargs="*", type=size, default=[250, 500, 750, None],
                        help="paired train overviews (all: the whole split)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pretrain-config", default="configs/pretrain/posters_movielens.yaml")
    parser.add_argument("--poster-config", default="configs/poster_pretrained.yaml")
    parser.add_argument("--text-config", default="configs/bag_of_words.yaml")
    parser.add_argument("--quick", action="store_true", help="use each config's quick block")
    parser.add_argument("--out", help="output prefix (default results/learning_curve; with --quick "
                        "runs/quick/learning_curve)")
    parser.add_argument("--workdir", default="runs/curve")
    args = parser.parse_args(argv)
    args.out = args.out or ("runs/quick/learning_curve" if args.quick else "results/learning_curve")
    command = "python benchmarks/learning_curve.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    tag = "quick-" if args.quick else ""
    # (branch, model, x = training examples of the varied set, seed, results)
    points = poster_points(args, tag) + text_points(args, tag)
    write_curves(curve_table(points), args, command)


def poster_points(args, tag) -> list:
    """Poster rows: the frozen branch pretrained on each posters-movielens size, per seed."""
    points = []
    for n in args.posters:
        pretrain_dir = None
        if n != 0:
            pre = load_config(args.pretrain_config, overrides=[f"data.train_limit={n or 'null'}"],
                              quick=args.quick)
            # "all" is the config's own run (the one the fused configs start from): reused if done.
            pretrain_dir = os.path.join(args.workdir, f"{tag}pretrain-{n}") if n else pre.run_dir
            train_and_evaluate(pre, pretrain_dir)
        for seed in args.seeds:
            overrides = [f"train.seed={seed}"]
            if pretrain_dir:
                overrides.append(f"train.init_from={pretrain_dir}")
            else:  # no pretraining: the same branch, trained end to end on the paired posters
                overrides += ["train.init_from=null", "train.init_frozen=false",
                              "train.cache_features=false", "train.epochs=15", "train.patience=4",
                              "train.learning_rate=0.001"]
            cfg = load_config(args.poster_config, overrides=overrides, quick=args.quick)
            run = os.path.join(args.workdir, f"{tag}poster-{n if n is not None else 'all'}-seed{seed}")
            results = train_and_evaluate(cfg, run)
            x = train_rows(pretrain_dir) if pretrain_dir else 0
            points.append(("poster", "compact_resnet (movielens-pretrained, frozen)" if x
                           else "compact_resnet (paired posters only)", x, seed, results))
    return points


def text_points(args, tag) -> list:
    """Text rows: the text config and TF-IDF + logistic regression on nested train subsets."""
    points = []
    for n in args.texts:
        for seed in args.seeds:
            limit = [f"data.train_limit={n if n is not None else 'null'}"]
            cfg = load_config(args.text_config, overrides=[f"train.seed={seed}", *limit],
                              quick=args.quick)
            run = os.path.join(args.workdir, f"{tag}text-{n or 'all'}-seed{seed}")
            results = train_and_evaluate(cfg, run)
            x = train_rows(run)
            points.append(("text", cfg.name, x, seed, results))
            out = os.path.join(args.workdir, f"{tag}tfidf-{n or 'all'}-seed{seed}")
            points.append(("text", "tfidf + logistic regression", x, seed,
                           run_classical(cfg.data, "tfidf", out, seed)))
    return points


def write_curves(table, args, command):
    files.write_csv(table, args.out + ".csv")
    common.learning_curves(table, ["macro_f1", "mAP"], args.out + ".png")
    shown = collapse_constant_prior(table)
    for m in METRICS:
        shown[m] = [f"{v:.3f} ± {s:.3f}" for v, s in zip(shown[m], shown[f"{m}_std"])]
    shown = shown[["branch", "model", "train_examples", "seeds", *METRICS]]
    files.write_text(args.out + ".md",
                    f"# Learning curves on the paired test split\n\n{reports.provenance(command)}\n\n"
                    f"Seeds: {args.seeds} (mean ± spread). Poster rows: train_examples is the number "
                    "of posters-movielens train posters the frozen branch was pretrained on (one "
                    "pretraining per size, seed 0; 0 = trained on the paired posters only). Text rows: "
                    "paired train overviews (nested subsets of one fixed shuffle). F1 at thresholds "
                    "chosen on dev (the default evaluation.thresholds rule); mAP is threshold-free.\n\n"
                    f"{reports.to_markdown(shown)}\n\n![learning curves]({os.path.basename(args.out)}.png)\n")
    print(reports.to_markdown(shown))


def collapse_constant_prior(table: pd.DataFrame) -> pd.DataFrame:
    """One prior row per branch when it scores the same at every size (the poster branch's
    prior never changes: pretraining size does not touch the paired train split)."""
    prior = table["model"].str.startswith("prior")
    keep = []
    for branch, rows in table[prior].groupby("branch", sort=False):
        if len(rows[METRICS].round(6).drop_duplicates()) == 1:
            row = rows.iloc[[0]].astype({"train_examples": object})
            row["train_examples"] = "every size"
            keep.append(row)
        else:
            keep.append(rows)
    out = pd.concat([table[~prior], *keep]).astype({"train_examples": object})
    return out.sort_values(["branch"], kind="stable").reset_index(drop=True)


def curve_table(points) -> pd.DataFrame:
    """Mean and spread over seeds per (branch, model, train_examples), with the prior rows."""
    rows = []
    for branch, model, x, seed, results in points:
        test = results["splits"]["test"]
        rows.append({"branch": branch, "model": model, "train_examples": x, "seed": seed,
                     **{m: test["tuned"][m] for m in METRICS}})
        rows.append({"branch": branch, "model": "prior (train frequency)", "train_examples": x,
                     "seed": seed, **{m: test["prior"][m] for m in METRICS}})
    frame = pd.DataFrame(rows).drop_duplicates(["branch", "model", "train_examples", "seed"])
    keys = ["branch", "model", "train_examples"]
    grouped = frame.groupby(keys, sort=False)[METRICS]
    table = grouped.mean().join(grouped.std(ddof=0).add_suffix("_std"))
    table.insert(0, "seeds", frame.groupby(keys, sort=False).size())
    return table.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)


if __name__ == "__main__":
    main()
