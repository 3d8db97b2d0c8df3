"""The benchmark scripts: bad input fails clearly (fast); the full harness runs under -m benchmark."""

import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(__file__))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_rejects_gpu_only_options_and_oversized_batches(synthetic_dir):
    import tensorflow as tf

    throughput = _load("throughput")
    config = os.path.join(ROOT, "configs", "cnn.yaml")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(SystemExit, match="GPU-only options and this machine has no GPU"):
            throughput.measure(config, synthetic_dir, 8, 1, "mixed_float16", False, False, "default")
    with pytest.raises(SystemExit, match=r"batch size 5000 is larger than the train split \(168 rows\)"):
        throughput.measure(config, synthetic_dir, 5000, 1, "float32", False, False, "default")
    with pytest.raises(SystemExit, match="config not found"):
        throughput.main(["--configs", "configs/nope.yaml"])


@pytest.mark.benchmark
def test_benchmark_harnesses_run_end_to_end(synthetic_dir, tmp_path):
    _load("throughput").main(["--configs", os.path.join(ROOT, "configs", "lstm.yaml"), "--data",
                              synthetic_dir, "--batch-size", "16", "--steps", "2",
                              "--out", str(tmp_path / "tp")])
    assert (tmp_path / "tp.md").read_text().count("lstm.yaml") >= 1
    _load("scaling").main(["--configs", os.path.join(ROOT, "configs", "lstm.yaml"), "--batch-sizes", "8",
                           "--sizes", "50", "--steps", "1", "--work-dir", str(tmp_path / "w"),
                           "--out", str(tmp_path / "sc")])
    assert (tmp_path / "sc.png").exists()


def test_ablation_variants_become_named_rows(tmp_path):
    accuracy = _load("accuracy")
    good = tmp_path / "good.yaml"
    good.write_text("- {name: bow_balanced, config: configs/bag_of_words.yaml, set: [train.loss=balanced]}\n")
    assert accuracy.read_variants(str(good)) == [
        ("configs/bag_of_words.yaml", ["name=bow_balanced", "train.loss=balanced"])]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x, config: c.yaml, sets: [a=1]}\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: entry 0 must be \{name, config"):
        accuracy.read_variants(str(bad))


def test_learning_curve_table_averages_seeds_per_size():
    curve = _load("learning_curve")

    def result(value):
        scores = {m: value for m in curve.METRICS}
        return {"splits": {"test": {"tuned": scores, "prior": {m: 0.1 for m in curve.METRICS}}}}

    points = [("text", "bow", 250, 0, result(0.2)), ("text", "bow", 250, 1, result(0.4)),
              ("text", "bow", 1044, 0, result(0.5))]
    table = curve.curve_table(points)
    bow = table[table["model"] == "bow"].set_index("train_examples")
    assert bow.loc[250, "mAP"] == pytest.approx(0.3) and bow.loc[250, "seeds"] == 2
    assert bow.loc[250, "mAP_std"] == pytest.approx(0.1) and bow.loc[1044, "mAP"] == 0.5
    prior = table[table["model"].str.startswith("prior")]
    assert list(prior["train_examples"]) == [250, 1044] and (prior["mAP"] == 0.1).all()
    shown = curve.collapse_constant_prior(table)
    assert shown[shown["model"].str.startswith("prior")]["train_examples"].tolist() == ["every size"]


@pytest.mark.slow
def test_threshold_rule_cross_validation_reads_dev_only_and_favours_stable_thresholds():
    import numpy as np

    rules = _load("threshold_rules")
    rng = np.random.default_rng(0)
    # Rare genres with 3 dev positives: per-genre F1 tuning overfits half of dev, prevalence does not.
    y_dev = np.zeros((120, 4))
    for g in range(4):
        y_dev[rng.choice(120, 3 if g else 40, replace=False), g] = 1
    p_dev = np.clip(y_dev * 0.25 + rng.random((120, 4)) * 0.75, 0, 1)
    scores = rules.split_half_scores(y_dev, p_dev, y_dev, repeats=3)
    assert {len(v) for v in scores.values()} == {6}  # 3 repeats x 2 folds per rule
    assert np.mean(scores["prevalence"]) > np.mean(scores["per_genre"])


@pytest.mark.slow
def test_quick_benchmark_runs_never_write_into_results(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The row in a process of its own (--row-processes): its results and timed steps come back.
    _load("accuracy").main(["--quick", "--configs", os.path.join(ROOT, "configs", "bag_of_words.yaml"),
                            "--data", synthetic_dir, "--set", "data.min_genre_count=3",
                            "--row-processes"])
    report = (tmp_path / "runs" / "quick" / "baselines.md").read_text()
    # The row's wall time and its process's peak memory in the Time section.
    assert re.search(r"\| bag_of_words \(seed 0\) \| \d+ \|.*\| \d+\.\d\d \|", report), report
    assert "| bag_of_words | 1 |" in report  # its scores in the table
    assert not (tmp_path / "results").exists()


def test_time_section_says_which_step_took_how_long():
    import time

    from mmgenre import progress

    accuracy = _load("accuracy")
    timings = []
    def row():
        with progress.timed("embed 3 overviews with mpnet"):
            pass
        progress.STEPS.append(("prepare encoder mpnet", 20.0))  # as sources.prepare records it
    accuracy.timed_row(timings, "mpnet_probe", 0, row)
    assert [step for step, _ in timings[0]["steps"]] == ["embed 3 overviews with mpnet",
                                                          "prepare encoder mpnet"]
    text = accuracy.time_section(timings, started=time.time() - 130)
    assert "took 2 min 10 s of wall clock (embed 0 s, prepare 20 s of it)" in text, text
    assert ("| mpnet_probe (seed 0) | 0 | embed 3 overviews with mpnet: 0 s; "
            "prepare encoder mpnet: 20 s |") in text
