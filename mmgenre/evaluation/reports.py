"""Markdown/CSV result tables and the study's error analysis."""

from __future__ import annotations

import datetime
import platform
import textwrap

import numpy as np
import pandas as pd

from mmgenre.evaluation.metrics import HEADLINE
from mmgenre.runs import RunFolder


def machine_description() -> str:
    """One line naming the machine a number came from (CPU count, GPU if any)."""
    import os

    desc = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        desc += f", {len(gpus)} GPU(s)" if gpus else ", no GPU"
        desc += f", TensorFlow {tf.__version__}"
    except ImportError:
        pass
    return desc


def provenance(command: str) -> str:
    """The header every file in results/ carries: command, date, machine."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Produced by `{command}` on {now}; machine: {machine_description()}."


def to_markdown(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub Markdown table without the tabulate dependency."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


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


def metrics_rows(name: str, split_metrics: dict, chosen_on: str = "dev") -> list:
    """Flattens evaluate_split output into table rows (one per threshold rule); ``chosen_on``
    names the split the thresholds came from."""
    rows = []
    for rule, values in split_metrics.items():
        if "accuracy" in values:  # single-label scores: the top genre, no thresholds
            rows.append({"model": name, "thresholds": "argmax", "accuracy": values["accuracy"],
                         "macro_f1": values["macro_f1"]})
        else:
            rows.append({"model": name, "thresholds": "0.5" if rule == "at_0.5" else f"chosen on {chosen_on}",
                         **{k: values[k] for k in HEADLINE}})
    return rows


def error_analysis(table: pd.DataFrame, y_true, y_prob, genres, y_pred, limit: int = 25) -> str:
    """Markdown list of the most wrong test movies: title, overview, true vs predicted.

    ``y_pred``: (n, genres) bool, the genres the task decided (``Task.decide``).
    "Most wrong" = largest summed absolute error between targets and
    probabilities, so confident mistakes come first.
    """
    y_pred = np.asarray(y_pred, bool)
    errors = np.abs(np.asarray(y_true) - np.asarray(y_prob)).sum(axis=1)
    wrong = [i for i in np.argsort(-errors) if (y_pred[i] != (y_true[i] > 0.5)).any()]
    truth = np.asarray(y_true) > 0.5
    false_pos, false_neg = (y_pred & ~truth).sum(axis=0), (~y_pred & truth).sum(axis=0)
    counts = pd.DataFrame({"genre": genres, "support": truth.sum(axis=0),
                           "false positives": false_pos, "false negatives": false_neg})
    counts = counts.sort_values(["support"], ascending=False)
    lines = ["Errors per genre (thresholds chosen on dev): which genres the model adds wrongly "
             "(false positives) and which it misses (false negatives).", "",
             to_markdown(counts, ".0f"), "",
             f"{len(wrong)} of {len(table)} movies have at least one wrong genre; "
             f"the {min(limit, len(wrong))} most confident mistakes:", ""]
    for i in wrong[:limit]:
        row = table.iloc[i]
        true = [g for g, t in zip(genres, y_true[i]) if t > 0.5]
        pred = [f"{g} ({p:.2f})" for g, p, on in zip(genres, y_prob[i], y_pred[i]) if on]
        text = row["overview"]
        overview = textwrap.shorten(text if isinstance(text, str) and text else "(no overview)", 240)
        lines += [f"- **{row['title']}** ({row['id']})", f"  - true: {', '.join(true) or '-'}",
                  f"  - predicted: {', '.join(pred) or '-'}", f"  - overview: {overview}"]
    return "\n".join(lines) + "\n"


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
