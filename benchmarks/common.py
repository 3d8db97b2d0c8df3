"""Tables and plots only the benchmark scripts make (results/ files): summaries over run
folders, the fused-against-unimodal verdict, comparison and learning-curve plots. The library
(mmgenre.evaluation) writes one run's report; these compare many."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenre.evaluation.plots import save_figure  # noqa: E402
from mmgenre.runs import RunFolder  # noqa: E402


def summarize_runs(runs, metrics, split: str = "test"):
    """Mean and spread over seeds of the dev-tuned test metrics.

    Args:
        runs: list of (name, seed, results dict from train_and_evaluate).
        metrics: metric names to report.

    Returns:
        (summary, per_run) DataFrames. ``summary`` has one row per name plus the
        prior baseline row first, with ``<metric>`` (mean) and ``<metric>_std``.
    """
    rows = []
    for name, seed, results in runs:
        scores = results["splits"][split]
        values = scores.get("tuned", scores.get("at_0.5"))
        rows.append({"model": name, "seed": seed, **{m: values[m] for m in metrics},
                     "params": results.get("params"), "train_seconds": results.get("train_seconds"),
                     # k-fold out-of-fold train mAP (models fitted by cross-validation): the
                     # selection score that does not spend the small dev split
                     "cv_train_mAP": results.get("cv_train_mAP")})
        if "prior" in scores:
            rows.append({"model": "prior (train frequency)", "seed": seed,
                         **{m: scores["prior"][m] for m in metrics}})
        # Missing-modality rows are scored on the final (test) split only.
        for label, variant in ((results.get("missing_modality") or {}).items() if split == "test" else ()):
            values = variant.get("tuned", variant.get("at_0.5"))
            rows.append({"model": f"{name} ({label})", "seed": seed, **{m: values[m] for m in metrics}})
    # The prior row repeats once per run; count it once per seed.
    per_run = pd.DataFrame(rows).drop_duplicates(subset=["model", "seed"]).reset_index(drop=True)
    grouped = per_run.groupby("model", sort=False)
    summary = grouped[list(metrics)].mean()
    spread = grouped[list(metrics)].std(ddof=0).add_suffix("_std")
    summary = summary.join(spread)
    summary.insert(0, "seeds", grouped.size())
    extras = ("params", "train_seconds", "cv_train_mAP")
    for extra in extras:
        if extra in per_run:
            summary[extra] = grouped[extra].mean()
    summary = summary.reset_index()
    order = [m for m in metrics] + [f"{m}_std" for m in metrics]
    summary = summary[["model", "seeds", *order, *[c for c in extras if c in summary]]]
    prior = summary["model"].str.startswith("prior")
    summary = pd.concat([summary[prior], summary[~prior]]).reset_index(drop=True)
    return summary, per_run


def format_summary(summary: pd.DataFrame, metrics) -> pd.DataFrame:
    """Markdown-ready copy of a summarize_runs table: "mean ± std" cells."""
    out = pd.DataFrame({"model": summary["model"], "seeds": summary["seeds"]})
    if "cv_train_mAP" in summary and summary["cv_train_mAP"].notna().any():
        out["cv train mAP"] = [f"{v:.3f}" if v == v else "" for v in summary["cv_train_mAP"]]
    for m in metrics:
        out[m] = [f"{v:.3f} ± {s:.3f}" if v == v else "" for v, s in zip(summary[m], summary[f"{m}_std"])]
    if "params" in summary:
        out["params"] = [f"{int(p):,}" if p == p else "" for p in summary["params"]]
    if "train_seconds" in summary:
        out["train s"] = [f"{t:.0f}" if t == t else "" for t in summary["train_seconds"]]
    return out


def threshold_rule_table(runs, metrics=("macro_f1", "micro_f1"), split: str = "test") -> pd.DataFrame:
    """Models x (metric, threshold rule): test scores under every rule, mean over seeds.

    Reads each run's ``by_rule`` metrics (runs record every rule); runs without
    them are left out.
    """
    rows = [{"model": name, "seed": seed, **{f"{m} ({rule})": values[m] for rule, values in
                                            results["splits"][split]["by_rule"].items() for m in metrics}}
            for name, seed, results in runs if "by_rule" in results["splits"][split]]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby("model", sort=False).mean().drop(columns="seed").reset_index()


def per_genre_summary(folders) -> pd.DataFrame:
    """Genres x models table of test F1 (mean over seeds) from each run's per_genre.csv.

    Args:
        folders: list of (model name, seed, run folder).
    """
    import os

    frames = []
    for name, seed, folder in folders:
        path = RunFolder(folder).per_genre
        if os.path.exists(path):
            frame = pd.read_csv(path)
            frames.append(frame.assign(model=name, seed=seed))
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames)
    table = frame.pivot_table(index=["genre", "support"], columns="model", values="f1",
                              aggfunc="mean", sort=False)
    table.index = [f"{g} [{s}]" for g, s in table.index]
    table.index.name = "genre"
    return table[[name for name in dict.fromkeys(n for n, _, _ in folders) if name in table]]


def dev_choice(summary: pd.DataFrame, fused, select: str = "dev mAP"):
    """(best fused row, best unimodal row) by ``select`` (dev scores), or None.

    Rows scoring a missing input and the prior are neither; test never chooses.
    """
    names = summary["model"]
    clean = ~names.str.contains("missing") & ~names.str.startswith("prior")
    both = names.isin(list(fused))
    fused_rows, single = summary[clean & both], summary[clean & ~both]
    if fused_rows.empty or single.empty or select not in summary:
        return None
    return (fused_rows.loc[fused_rows[select].idxmax()], single.loc[single[select].idxmax()])


def fusion_verdict(summary: pd.DataFrame, fused, metrics=("mAP", "macro_f1"),
                   select: str = "dev mAP") -> str:
    """One sentence per metric: does the fused row beat the unimodal row, each chosen on dev?

    Args:
        summary: ``summarize_runs`` output with a ``select`` column (dev scores).
        fused: names of rows that read both inputs (learned, linear or score-level fusion).
        select: the column that chooses each side's best row (``dev_choice``).
    """
    chosen = dev_choice(summary, fused, select)
    if chosen is None:
        return ""
    best_f, best_s = chosen
    lines = [f"Best on {select}: fused **{best_f['model']}**, unimodal **{best_s['model']}**."]
    for metric in metrics:
        verb = "beats" if best_f[metric] > best_s[metric] else "does NOT beat"
        lines.append(f"- test {metric}: the fused row ({best_f[metric]:.3f}) {verb} the unimodal "
                     f"row ({best_s[metric]:.3f}).")
    return "\n".join(lines)
def compare_models(table: pd.DataFrame, metrics, path: str, title: str = ""):
    """Grouped horizontal bars: one group per model (top to bottom in table order), one bar
    per metric (mean, with spread if given). Horizontal, so 30+ ablation rows stay readable."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(table) * max(1, len(metrics) / 2) + 1.5))
    height = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        err = table[f"{metric}_std"] if f"{metric}_std" in table else None
        ax.barh([i + k * height for i in range(len(table))], table[metric], height, xerr=err,
                label=metric, capsize=2)
    ax.set_yticks([i + height * (len(metrics) - 1) / 2 for i in range(len(table))])
    ax.set_yticklabels(table["model"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def learning_curves(table: pd.DataFrame, metrics, path: str):
    """One row of panels per branch, one panel per metric: score against training examples,
    one line per model (the prior dashed), spread over seeds as error bars."""
    branches = list(dict.fromkeys(table["branch"]))
    fig, axes = plt.subplots(len(branches), len(metrics), figsize=(4.5 * len(metrics), 3.4 * len(branches)),
                             squeeze=False)
    for row, branch in zip(axes, branches):
        part = table[table["branch"] == branch]
        for ax, metric in zip(row, metrics):
            for model, line in part.groupby("model", sort=False):
                prior = model.startswith("prior")
                ax.errorbar(line["train_examples"], line[metric], yerr=line.get(f"{metric}_std"),
                            marker="" if prior else "o", linestyle="--" if prior else "-",
                            color="grey" if prior else None, capsize=2, label=model)
            ax.set_xlabel("posters-movielens pretraining posters" if branch == "poster"
                          else "paired train overviews")
            ax.set_title(f"{branch} branch: {metric} (test)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
def scaling(by_batch: pd.DataFrame, by_size: pd.DataFrame, path: str):
    """Left: training samples/s against batch size; right: pipeline posters/s against dataset size."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for config, rows in by_batch.groupby("config"):
        for column, style in (("train_cached_pipeline_sps", "-o"), ("train_in_memory_sps", "--x")):
            left.plot(rows["batch_size"], rows[column], style,
                      label=f"{config} {column.replace('train_', '').replace('_sps', '')}")
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("training samples/s")
    left.legend(fontsize=7)
    for cache, rows in by_size.groupby("cache"):
        right.plot(rows["movies"], rows["second_pass_sps"], "-o", label=f"{cache} cache, 2nd pass")
        right.plot(rows["movies"], rows["first_pass_sps"], ":", label=f"{cache} cache, 1st pass")
    right.set_xscale("log")
    right.set_xlabel("movies in dataset")
    right.set_ylabel("pipeline posters/s")
    right.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
