"""Accuracy comparison: every model config, classical baselines and score fusion,
several seeds, one results table (test split; thresholds and weights chosen on dev).

    python benchmarks/accuracy.py                       # cnn + lstm on the sample set
    python benchmarks/accuracy.py --quick               # minutes-long harness check
    python benchmarks/accuracy.py --configs configs/cnn.yaml configs/fusion_gmu.yaml \
        --classical tfidf poster tfidf+poster --score-fusion cnn lstm --seeds 0 1 2 \
        --out results/comparison

An ablation is a YAML list of variants, each a config plus overrides under its own row name:

    python benchmarks/accuracy.py --configs --variants configs/ablations/text.yaml --seeds 0 1 2

    # configs/ablations/text.yaml
    - {name: bow_balanced, config: configs/bag_of_words.yaml, set: [train.loss=balanced]}

--select-ensemble adds a row picked by ensemble selection on dev mAP (Caruana et al. 2004) over
the given rows (default: all of them). --score-fusion takes two or more row names (two: weight
chosen on dev; more: equal weights); a
classical kind (tfidf, poster) is a row name too. --thresholds picks the rule behind the F1 columns
(evaluation.thresholds); a second table shows F1 under every rule for every row.

Writes OUT.csv (summary), OUT_runs.csv (every run), OUT_per_genre.csv, OUT.md (mean ± spread over
seeds, with the constant train-frequency prior as a baseline row) and OUT.png.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import common  # benchmarks/common.py: benchmark-only tables and plots
from row_process import (
    RowResult,
    classical_row,
    embed_row,
    in_row_process,
    lists_encoders,
    score_fusion_row,
    train_row,
)

from mmgenre import progress
from mmgenre import runs as mmgenre_runs  # a local "runs" lists run rows
from mmgenre.config import FUSION_SPACES, STRATEGIES, THRESHOLD_RULES, load_config
from mmgenre.files import atomic_path, read_json, write_csv, write_text

# TensorFlow is imported where a row is trained (``row_process``) and, once every row is done,
# for the tables: with --row-processes this process holds none while the rows run.


def read_variants(path):
    """[(config path, overrides)] from a variants file; each row's name becomes the config name."""
    import yaml

    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f) or []
    rows = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "config"} <= set(entry) \
                or set(entry) - {"name", "config", "set", "note"}:
            raise SystemExit(f"{path}: entry {i} must be {{name, config, set: [KEY=VALUE], note}}, "
                             f"got {entry!r}")
        rows.append((entry["config"], [f"name={entry['name']}", *entry.get("set", [])]))
    return rows


def timed_row(timings, name, seed, work):
    """``work()``, appending {row, seed, seconds, steps: the long steps it ran (encoder
    preparation, embedding, saving: ``mmgenre.progress.STEPS``), peak_gb} to ``timings``.
    ``work`` returns a result, or a RowResult (``row_process``)."""
    first, start = len(progress.STEPS), time.time()
    result = work()
    steps, peak = list(progress.STEPS[first:]), None
    if isinstance(result, RowResult):
        result, steps, peak = result.value, steps + result.steps, result.peak_gb
    timings.append({"row": name, "seed": seed, "seconds": round(time.time() - start, 1),
                    "steps": steps, "peak_gb": peak})
    return result


def run_seed(args, parser, rows, seed, tag, runs, folders, modalities, data_cfg, timings):
    """Trains and scores every row of one seed (configs, variants, classical baselines, score
    fusions), appending to ``runs``, ``folders``, ``modalities`` and ``timings``; returns the
    data config."""
    separate = args.row_processes
    run_dirs, cfgs = {}, []
    for path, variant in rows:
        overrides = [f"train.seed={seed}", f"evaluation.thresholds={args.thresholds}", *args.set]
        overrides += [f"data.path={args.data}"] if args.data else []
        overrides += [f"train.strategy={args.strategy}"] if args.strategy else []
        cfgs.append(load_config(path, overrides=overrides + variant, quick=args.quick))
    if separate and any(lists_encoders(cfg) for cfg in cfgs):
        timed_row(timings, "encoder embeddings", seed, lambda: in_row_process(True, embed_row, cfgs))
    for cfg in cfgs:
        run_dirs[cfg.name] = os.path.join(args.workdir, f"{tag}{cfg.name}-seed{seed}")
        results, modalities[cfg.name] = timed_row(timings, cfg.name, seed, lambda: in_row_process(
            separate, train_row, cfg, run_dirs[cfg.name]))
        runs.append((cfg.name, seed, results))
        folders.append((cfg.name, seed, run_dirs[cfg.name]))
        data_cfg = cfg.data
    if data_cfg is None:  # classical rows alone: the default data section
        data_cfg = load_config(raw={"name": "classical"}, overrides=[f"data.path={args.data}"]
                               if args.data else []).data
    for kind in args.classical:
        out = os.path.join(args.workdir, f"{tag}classical-{kind}-seed{seed}")
        name = f"{kind} + logistic regression"
        results, inputs = timed_row(timings, name, seed, lambda: in_row_process(
            separate, classical_row, data_cfg, kind, out, seed, args.thresholds))
        runs.append((name, seed, results))
        run_dirs[kind] = out
        folders.append((name, seed, out))
        modalities[name] = modalities[kind] = inputs
    fusions = [(members, "auto", f"score fusion {'+'.join(members)}",
                f"{tag}score-{'-'.join(members)}-seed{seed}") for members in args.score_fusion]
    if args.select_ensemble is not None:
        fusions.append((args.select_ensemble or list(run_dirs), "select",
                        "score fusion selected on dev", f"{tag}ensemble-selected-seed{seed}"))
    for members, weighting, name, folder in fusions:
        missing = [n for n in members if n not in run_dirs]
        if missing or (weighting == "auto" and len(members) < 2):
            flag = "--score-fusion" if weighting == "auto" else "--select-ensemble"
            parser.error(f"{flag} {members}: needs two or more rows of this run "
                         f"({sorted(run_dirs)}); not rows: {missing}")
        out = os.path.join(args.workdir, folder)
        results = in_row_process(separate, score_fusion_row, [run_dirs[n] for n in members], out,
                                 data_cfg, args.thresholds, args.fusion_space, weighting).value
        runs.append((name, seed, results))
        folders.append((name, seed, out))
        modalities[name] = set().union(*(modalities[n] for n in members))
    return data_cfg


def time_section(timings, started) -> str:
    """Markdown: the command's wall time, each row's, and the long steps inside each row."""
    total = time.time() - started
    kinds = {}
    for t in timings:
        for step, seconds in t["steps"]:
            kind = step.split(" ")[0]
            kinds[kind] = kinds.get(kind, 0.0) + seconds
    lines = [f"| {t['row']} (seed {t['seed']}) | {t['seconds']:.0f} | "
             + "; ".join(f"{step}: {seconds:.0f} s" for step, seconds in t["steps"])
             + (f" | {t['peak_gb']:.2f} |" if t.get("peak_gb") else " | |") for t in timings]
    rest = total - sum(t["seconds"] for t in timings)
    lines.append(f"| everything else (encoder checks, score fusion, bootstrap, tables, plots) | "
                 f"{rest:.0f} | | |")
    summary = ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in kinds.items())
    return (f"## Time\n\nThe whole command took {total // 60:.0f} min {total % 60:.0f} s of wall "
            f"clock{f' ({summary} of it)' if summary else ''}. The first row that reads an "
            "encoder prepares it (fetch, verify, convert) and embeds its inputs (with "
            "--row-processes the row \"encoder embeddings\" does, in a process of its own); later "
            "rows read the cached embeddings. Peak memory: a row's process's own peak resident memory "
            "(--row-processes).\n\n| row | seconds | long steps in it | peak memory (GB) |\n"
            "|---|---|---|---|\n"
            + "\n".join(lines) + "\n\n")


def write_results(args, parser, command, runs, folders, modalities, data_cfg, timings=(),
                  started=None) -> str:
    """OUT.csv, OUT_runs.csv, OUT_per_genre.csv, OUT.png, OUT.md (and OUT_errors.md); returns
    the markdown summary table."""
    from mmgenre.evaluation import reports
    from mmgenre.evaluation.metrics import TABLE_COLUMNS

    summary, per_run = common.summarize_runs(runs, list(TABLE_COLUMNS))
    # Dev mAP beside the test columns: choices between rows are made on dev, never on test.
    dev, _ = common.summarize_runs(runs, ["mAP"], split="dev")
    for column, source in (("dev mAP", "mAP"), ("dev mAP_std", "mAP_std")):
        summary[column] = summary["model"].map(dict(zip(dev["model"], dev[source])))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_csv(summary, args.out + ".csv")
    write_csv(per_run, args.out + "_runs.csv")
    common.compare_models(summary, ["micro_f1", "macro_f1", "mAP"], args.out + ".png",
                         f"test split, thresholds by rule {args.thresholds!r} on dev "
                         "(mean over seeds)")
    per_genre = common.per_genre_summary(folders)
    write_text(args.out + "_per_genre.csv", per_genre.to_csv())
    table = reports.to_markdown(common.format_summary(summary, ["dev mAP", *TABLE_COLUMNS]))
    rules = common.threshold_rule_table(runs)
    fused_rows = {name for name, inputs in modalities.items() if inputs == {"poster", "overview"}}
    select = {"dev": "dev mAP", "cv": "cv_train_mAP"}[args.select]
    chosen = common.dev_choice(summary, fused_rows, select)
    pair = (chosen[0]["model"], chosen[1]["model"]) if chosen else None
    intervals = bootstrap_section(folders, pair, data_cfg, args.seeds[0], args.bootstrap,
                                  select) \
        if args.bootstrap else ""
    oof_rows = sorted({name for name, _, d in folders if (read_json(
        mmgenre_runs.RunFolder(d).metrics) or {}).get("threshold_split") == "train_oof"})
    where = (f" Rows {', '.join(oof_rows)} (evaluation.threshold_split train_oof) choose them on "
             "their out-of-fold train probabilities instead of dev." if oof_rows else "")
    write_text(
        args.out + ".md",
        f"# Accuracy on the test split\n\n{reports.provenance(command)}\n\n"
        f"Seeds: {args.seeds}. F1 at thresholds chosen on dev by rule "
        f"'{args.thresholds}' (see mmgenre.training.thresholds.choose).{where} mAP is "
        "threshold-free. The prior row predicts each genre's train frequency. Rows "
        "'(poster missing)' / '(overview missing)' score a fused model with that input "
        f"absent.\n\n{table}\n\n{intervals}"
        f"{common.fusion_verdict(summary, fused_rows, select=select)}\n\n"
        f"![comparison]({os.path.basename(args.out)}.png)\n\n"
        f"{time_section(timings, started) if started else ''}"
        "## F1 on test under each threshold rule (mean over seeds)\n\n"
        f"{reports.to_markdown(rules)}\n\n"
        "## Per-genre F1 on test (mean over seeds; test support in brackets)\n\n"
        f"{reports.to_markdown(per_genre.reset_index(), '.2f')}\n")
    if args.errors:
        source = next((d for name, _, d in folders if name == args.errors), None)
        if source is None:
            parser.error(f"--errors {args.errors!r}: not a row of this run")
        with open(os.path.join(source, "errors.md"), encoding="utf-8") as f:
            analysis = f.read()
        with atomic_path(args.out + "_errors.md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
            f.write(f"{reports.provenance(command)}\n\nRun folder: `{source}` (seed {args.seeds[0]}).\n\n"
                    f"{analysis}")
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=["configs/cnn.yaml", "configs/lstm.yaml"])
    parser.add_argument("--variants", help="YAML list of {name, config, set: [KEY=VALUE, ...]} rows")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data", help="dataset path overriding each config's data.path")
    parser.add_argument("--quick", action="store_true", help="use each config's quick block")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every config")
    parser.add_argument("--classical", nargs="*", default=[],
                        help="classical baselines: tfidf, poster, a prepared encoder's linear probe "
                             "(minilm, efficientnet_lite0), or parts joined by + (tfidf+minilm); "
                             "encoders are prepared first when needed")
    parser.add_argument("--score-fusion", nargs="+", action="append", default=[], metavar="ROW",
                        help="fuse the probabilities of two or more rows (config names, variant "
                             "names or classical kinds)")
    parser.add_argument("--select-ensemble", nargs="*", metavar="ROW",
                        help="add a row: ensemble selection on dev mAP over these rows (no names: "
                             "every config, variant and classical row)")
    parser.add_argument("--fusion-space", choices=FUSION_SPACES, default=FUSION_SPACES[0],
                        help="score space of --score-fusion and --select-ensemble rows (results made "
                             "before the encoder rows averaged probabilities: --fusion-space probability)")
    parser.add_argument("--thresholds", choices=THRESHOLD_RULES, default=THRESHOLD_RULES[0],
                        help="threshold rule of every row's F1 columns (evaluation.thresholds)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy for every config (multiworker reads TF_CONFIG)")
    parser.add_argument("--errors", metavar="ROW",
                        help="copy this row's seed error analysis (first seed) to OUT_errors.md")
    parser.add_argument("--out", help="output prefix (default results/baselines; with --quick "
                        "runs/quick/baselines, so smoke runs never overwrite committed results)")
    parser.add_argument("--workdir", default="runs/bench")
    parser.add_argument("--row-processes", action="store_true",
                        help="embed every row's inputs first, then train each row, in fresh "
                             "processes: the peak memory is the largest row's (README's first "
                             "command: 2.14 GB from cached embeddings), at about 14 s more a row "
                             "(row_process.py)")
    parser.add_argument("--select", choices=("dev", "cv"), default="dev",
                        help="what chooses the best fused and unimodal rows: dev mAP, or k-fold "
                             "train mAP (cv; only rows fitted by cross-validation, the linear "
                             "probes, can be chosen)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="add 95%% paired bootstrap intervals of test mAP (N resamples of the "
                             "test movies, first seed) per row and for best fused minus best "
                             "unimodal, both chosen on dev mAP")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = args.out or ("runs/quick/baselines" if args.quick else "results/baselines")

    started = time.time()
    command = "python benchmarks/accuracy.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    tag = "quick-" if args.quick else ""
    rows = [(path, []) for path in args.configs] + (read_variants(args.variants) if args.variants else [])
    if not rows and not args.classical:
        parser.error("nothing to run: give --configs, --variants and/or --classical")
    from mmgenre.encoders import sources

    for kind in args.classical:  # the headline prepares its encoders itself (idempotent)
        sources.prepare_known(kind.split("+"))
    runs, folders, data_cfg, timings = [], [], None, []
    modalities = {}  # row name -> inputs it reads, to tell fused rows from unimodal ones
    for seed in args.seeds:
        data_cfg = run_seed(args, parser, rows, seed, tag, runs, folders, modalities, data_cfg,
                            timings)
    table = write_results(args, parser, command, runs, folders, modalities, data_cfg, timings,
                          started)
    print(table)


def bootstrap_section(folders, pair, data_cfg, seed, resamples, rule="dev mAP") -> str:
    """Markdown: 95% paired bootstrap intervals of test mAP per row, and of the difference
    between the two rows of ``pair`` (fused, unimodal: ``common.dev_choice``) when given."""
    from intervals import paired_bootstrap

    from mmgenre.evaluation.metrics import mean_average_precision
    from mmgenre.evaluation.saved_scores import aligned_probabilities

    chosen = [(name, folder) for name, s, folder in folders if s == seed]
    prepared, members, _, _ = aligned_probabilities([f for _, f in chosen], data_cfg)
    names = [name for name, _ in chosen]
    dev = {n: mean_average_precision(prepared.splits["dev"][1], m["dev"]) for n, m in zip(names, members)}
    pairs = [pair] if pair else []
    out = paired_bootstrap(prepared.splits["test"][1], {n: m["test"] for n, m in zip(names, members)},
                           resamples=resamples, pairs=pairs)
    rows = [f"| {n} | {dev[n]:.3f} | {out[n][0]:.3f} | [{out[n][1]:.3f}, {out[n][2]:.3f}] |"
            for n in names]
    text = (f"## 95% paired bootstrap intervals (test mAP, seed {seed}, {resamples} resamples of the "
            f"{len(prepared.splits['test'][1])} test movies every row scored)\n\n"
            "| model | dev mAP | test mAP | 95% interval |\n|---|---|---|---|\n" + "\n".join(rows))
    for a, b in pairs:
        point, low, high = out[f"{a} - {b}"]
        verdict = "above 0" if low > 0 else "not above 0"
        digits = 4 if abs(low) < 0.0005 else 3  # "[+0.000, ...] (above 0)" would hide the sign
        text += (f"\n\nChosen on {rule}: best fused row **{a}**, best unimodal row **{b}**. "
                 f"Test mAP difference {point:+.3f}, 95% interval [{low:+.{digits}f}, "
                 f"{high:+.{digits}f}] ({verdict}).")
    return text + "\n\n"


if __name__ == "__main__":
    main()
