"""How fast and how good is a keras-tuner search over encoder heads on cached features?

Runs a search config (default configs/search/encoder_head.yaml: 30 random trials, each a
5-fold cross-validation of a Keras head on the train split's cached TF-IDF, MPNet and
EfficientNet-Lite0 features), retrains the best trial as a run, and trains the untuned
encoder head and the linear probe over the same features beside it. Every row is chosen on
train only (the search's objective is cv_train_mAP); dev and test are scored once.

    python benchmarks/head_search.py --out results/head_search

Timings: the search's wall time counts from an empty search folder with the encoder
embeddings already cached (the headline command caches them); per-trial seconds come from the
search's own log.
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

from mmgenre import config as config_lib  # noqa: E402
from mmgenre import files  # noqa: E402
from mmgenre.evaluation import reports  # noqa: E402
from mmgenre.training.trainer import train_and_evaluate  # noqa: E402
from mmgenre.tuning import search as search_lib  # noqa: E402


def run_row(label, how, metrics):
    """One table row from a run's metrics.json: the rule's test scores and the train-only score."""
    test = metrics["splits"]["test"]
    return {"row": label, "chosen": how, "cv_train_mAP": metrics.get("cv_train_mAP"),
            "dev_mAP": metrics["splits"]["dev"]["at_0.5"]["mAP"],
            "test_mAP": test["at_0.5"]["mAP"], "test_macro_f1": test["tuned"]["macro_f1"],
            "test_top1": test["at_0.5"]["top1_accuracy"], "test_brier": test["at_0.5"]["brier"],
            "test_ece": test["at_0.5"]["ece"],
            "fit_seconds": metrics.get("head_seconds", metrics.get("solve_seconds"))}


def search(args, overrides):
    """(trials table, best config, wall seconds) of a search started from an empty folder."""
    cfg = search_lib.load_search_config(args.config, overrides, max_trials=args.max_trials)
    cfg.directory = os.path.join(args.workdir, "search")
    if os.path.exists(cfg.directory):  # the benchmark's own scratch folder: time a fresh search
        shutil.rmtree(cfg.directory)
    started = time.time()
    table, best = search_lib.run_search(cfg, verbose=0)
    return table, best, time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/search/encoder_head.yaml")
    parser.add_argument("--data", help="dataset folder (default: the experiment's)")
    parser.add_argument("--max-trials", type=int)
    parser.add_argument("--workdir", default="runs/head_search")
    parser.add_argument("--out", default="results/head_search")
    args = parser.parse_args(argv)
    command = "python benchmarks/head_search.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    overrides = [f"experiment.data.path={args.data}"] if args.data else []
    table, best, seconds = search(args, overrides)
    done = table[table["status"] == "COMPLETED"]
    print(f"search: {len(done)} trials in {seconds:.0f} s")
    experiment = search_lib.experiment_config(search_lib.load_search_config(args.config, overrides))
    probe = config_lib.load_config("configs/best.yaml",
                                   overrides=[f"data.path={experiment.data.path}"])
    rows = [run_row("linear probe (configs/best.yaml)", "C on 5-fold train mAP",
                    train_and_evaluate(probe, os.path.join(args.workdir, "probe"))),
            run_row("encoder head, untuned", "config defaults",
                    train_and_evaluate(experiment, os.path.join(args.workdir, "untuned"))),
            run_row("encoder head, searched", "best of the search on k-fold train mAP",
                    train_and_evaluate(best, os.path.join(args.workdir, "best")))]
    frame = pd.DataFrame(rows)
    files.write_csv(frame, args.out + ".csv")
    files.write_csv(table, args.out + "_trials.csv")
    per_trial = done["seconds"].astype(float)
    files.write_text(args.out + ".md", "\n".join([
        f"# keras-tuner over encoder heads on cached features ({os.path.basename(args.config)})",
        "", reports.provenance(command), "",
        f"Dataset: {experiment.data.path}. Search: {len(done)} completed trials of "
        f"{len(table)} in {seconds:.0f} s ({seconds / 60:.1f} min) from an empty search folder, "
        f"embeddings cached; per trial median {per_trial.median():.1f} s, max "
        f"{per_trial.max():.1f} s ({experiment.model.params.get('folds', 5)} head fits each). "
        f"Best trial cv_train_mAP {done['objective'].max():.4f}.", "",
        "Rows are run folders under the workdir (evaluate, predict and export take them); "
        "test columns: mAP, top-1, Brier and ECE of the probabilities, macro-F1 at the "
        "thresholds the run's rule chose on dev.", "",
        reports.to_markdown(frame, ".3f"), "",
        "## Trials", "", reports.to_markdown(table, ".4g"), ""]))
    print(open(args.out + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    main()
