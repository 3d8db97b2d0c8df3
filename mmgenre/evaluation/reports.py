"""Markdown/CSV result tables and the study's error analysis."""

from __future__ import annotations

import datetime
import platform
import textwrap

import numpy as np
import pandas as pd

from mmgenre.evaluation.metrics import HEADLINE


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's name, model and widest vector instruction set, e.g. "AMD EPYC (family 25 model
    17, AVX-512)"; what the platform says where ``cpuinfo`` cannot be read.

    Results name it because gradient-trained rows differ in their last digits between CPUs:
    one machine repeats them bit for bit, and machines with the same CPU have agreed to the
    digit (results/NOTES.md, "The headline tables on a named CPU").
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            first = f.read().split("\n\n")[0]  # one block per core; they agree
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = {k.strip(): v.strip() for k, _, v in
              (line.partition(":") for line in first.splitlines())}
    flags = set(fields.get("flags", "").split())
    details = []
    if "cpu family" in fields and "model" in fields:  # x86; aarch64 names implementer and part
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    widest = next((isa for flag, isa in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), None)
    if widest:
        details.append(widest)
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    return f"{name} ({', '.join(details)})" if details else name


def machine_description() -> str:
    """One line naming the machine a number came from (CPU, core count, GPU if any)."""
    import os

    desc = f"{platform.machine()} {cpu_description()}, {os.cpu_count()} CPU cores"
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
