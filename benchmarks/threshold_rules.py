"""Which threshold rule turns scores into genres best? Decided on dev only.

Repeated split-half cross-validation of the dev split: for each saved run, dev is cut in two
random halves; thresholds are chosen on one half by every rule
(mmgenre.training.thresholds.choose) and macro-F1 is measured on the other half, both
ways, --repeats times. Test probabilities are never read, so the winning rule may then be used
on test without leaking it.

    python benchmarks/threshold_rules.py --runs runs/bench/classical-tfidf-seed0 \
        runs/bench/bag_of_words-seed0 --repeats 10 --out results/threshold_rules

Run names ending in -seedN are averaged over seeds.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenre.config import THRESHOLD_RULES  # noqa: E402
from mmgenre.evaluation import metrics, reports  # noqa: E402
from mmgenre.evaluation.saved_scores import aligned_probabilities  # noqa: E402
from mmgenre.files import atomic_path, write_csv  # noqa: E402
from mmgenre.progress import progress  # noqa: E402
from mmgenre.training import thresholds as thresholds_lib  # noqa: E402


def split_half_scores(y_dev, p_dev, train_targets, repeats: int, seed: int = 0,
                      train_oof=None) -> dict:
    """{column: [held-out-half dev macro-F1, ...]} over ``repeats`` x 2 folds.

    Columns: each rule with thresholds chosen on the other dev half; with ``train_oof`` (a
    model's out-of-fold train probabilities) also "<rule> (train_oof)", thresholds chosen on
    those and scored on the same held-out halves.
    """
    rng = np.random.default_rng(seed)
    oof = {} if train_oof is None else {
        rule: thresholds_lib.choose(rule, train_targets, train_oof, train_targets)
        for rule in THRESHOLD_RULES}
    scores = {column: [] for column in [*THRESHOLD_RULES, *(f"{r} (train_oof)" for r in oof)]}
    for _ in range(repeats):
        order = rng.permutation(len(y_dev))
        half_a, half_b = order[: len(order) // 2], order[len(order) // 2:]
        for fit, held in ((half_a, half_b), (half_b, half_a)):
            for rule in THRESHOLD_RULES:
                t = thresholds_lib.choose(rule, y_dev[fit], p_dev[fit], train_targets)
                scores[rule].append(metrics.multilabel_metrics(y_dev[held], p_dev[held], t)["macro_f1"])
            for rule, t in oof.items():
                scores[f"{rule} (train_oof)"].append(
                    metrics.multilabel_metrics(y_dev[held], p_dev[held], t)["macro_f1"])
    return scores


def oof_summary(table) -> str:
    """A sentence on thresholds chosen on out-of-fold train probabilities, where runs had them."""
    columns = [c for c in table.columns if c.endswith("(train_oof)")]
    if not columns:
        return ""
    have = table.dropna(subset=columns)
    lines = ["", "Runs with out-of-fold train probabilities (models fitted by cross-validation): "
             "the (train_oof) columns choose thresholds on those train movies instead of the "
             "other dev half and score the same held-out dev halves."]
    for rule in THRESHOLD_RULES:
        ahead = int((have[f"{rule} (train_oof)"] > have[rule]).sum())
        lines.append(f"- {rule}: train_oof ahead of dev on {ahead} of {len(have)} runs, mean "
                     f"{(have[f'{rule} (train_oof)'] - have[rule]).mean():+.3f} macro-F1.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run folders with probabilities.npz")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="results/threshold_rules")
    args = parser.parse_args(argv)
    command = "python benchmarks/threshold_rules.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))

    rows = []
    data_cfg = None
    for run in progress(args.runs, len(args.runs), "split-half dev cross-validation"):
        prepared, (probs,), data_cfg, _ = aligned_probabilities([run], data_cfg)
        scores = split_half_scores(prepared.splits["dev"][1], probs["dev"],
                                   prepared.splits["train"][1], args.repeats,
                                   train_oof=probs.get("train_oof"))
        name = re.sub(r"-seed\d+$", "", os.path.basename(os.path.normpath(run)))
        rows.append({"run": name, **{rule: float(np.mean(v)) for rule, v in scores.items()}})
    per_run = pd.DataFrame(rows)
    grouped = per_run.groupby("run", sort=False)
    table = grouped[[c for c in per_run.columns if c != "run"]].mean()
    table.insert(0, "seeds", grouped.size())
    table["prevalence - per_genre"] = table["prevalence"] - table["per_genre"]
    table = table.reset_index()
    write_csv(table, args.out + ".csv")
    wins = int((table["prevalence - per_genre"] > 0).sum())
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# Threshold rules compared on dev only (split-half cross-validation)\n\n"
                f"{reports.provenance(command)}\n\n"
                f"Held-out-half dev macro-F1, mean over {args.repeats} x 2 folds (and over seeds). "
                "Test is not read.\n\n"
                f"{reports.to_markdown(table)}\n\n"
                f"The prevalence rule is ahead on {wins} of {len(table)} models.\n"
                + oof_summary(table))
    print(reports.to_markdown(table))


if __name__ == "__main__":
    main()
