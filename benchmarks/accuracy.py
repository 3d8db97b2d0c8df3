"""Accuracy comparison: train each config for several seeds, one results table.

    python benchmarks/accuracy.py                       # cnn + lstm on the sample set
    python benchmarks/accuracy.py --quick               # minutes-long harness check
    python benchmarks/accuracy.py --configs configs/cnn.yaml --seeds 0 1 2 --data DIR

Writes OUT.csv (summary), OUT_runs.csv (every run), OUT.md (mean and spread over seeds, with the
constant train-frequency prior as a baseline row) and OUT.png. Thresholds are
tuned on dev only; the table reports test.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mmgenre.config import load_config  # noqa: E402
from mmgenre.evaluation import plots, reports  # noqa: E402
from mmgenre.training.trainer import train_and_evaluate  # noqa: E402

HEADLINE = ["micro_f1", "macro_f1", "mAP", "weighted_f1", "samples_f1", "top1_accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/cnn.yaml", "configs/lstm.yaml"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data", help="dataset path overriding each config's data.path")
    parser.add_argument("--quick", action="store_true", help="use each config's quick block")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="results/baselines")
    parser.add_argument("--workdir", default="runs/bench")
    args = parser.parse_args(argv)

    command = "python benchmarks/accuracy.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    runs = []
    for path in args.configs:
        for seed in args.seeds:
            overrides = [f"train.seed={seed}", *args.set]
            if args.data:
                overrides.append(f"data.path={args.data}")
            cfg = load_config(path, overrides=overrides, quick=args.quick)
            tag = "quick-" if args.quick else ""
            results = train_and_evaluate(cfg, os.path.join(args.workdir, f"{tag}{cfg.name}-seed{seed}"))
            runs.append((cfg.name, seed, results))
    summary, per_run = reports.summarize_runs(runs, HEADLINE)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    summary.to_csv(args.out + ".csv", index=False)
    per_run.to_csv(args.out + "_runs.csv", index=False)
    plots.compare_models(summary, ["micro_f1", "macro_f1", "mAP"], args.out + ".png",
                         "test split, thresholds tuned on dev (mean over seeds)")
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(f"# Accuracy on the test split\n\n{reports.provenance(command)}\n\n"
                f"Seeds: {args.seeds}. F1 at per-genre thresholds tuned on dev; mAP is "
                "threshold-free. The prior row predicts each genre's train frequency.\n\n"
                f"{reports.to_markdown(reports.format_summary(summary, HEADLINE))}\n\n![comparison]({os.path.basename(args.out)}.png)\n")
    print(reports.to_markdown(reports.format_summary(summary, HEADLINE)))


if __name__ == "__main__":
    main()
