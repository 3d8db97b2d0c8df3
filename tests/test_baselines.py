import json
import os
import shutil

import common
import numpy as np
import pytest
from classical import run_classical
from conftest import tiny_config

from mmgenre.evaluation import metrics
from mmgenre.training import late_fusion as score_fusion


@pytest.mark.slow
def test_tfidf_baseline_learns_and_reports_like_a_deep_model(synthetic_dir, tfidf_baseline, tmp_path):
    cfg = tiny_config(synthetic_dir, "lstm")
    results = json.load(open(os.path.join(tfidf_baseline, "metrics.json")))
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.3
    assert os.path.exists(os.path.join(tfidf_baseline, "report.md")) and results["C"] > 0

    # Score fusion reads any run's saved probabilities, classical ones included.
    run_classical(cfg.data, "poster", str(tmp_path / "poster"))
    runs = [str(tmp_path / "poster"), tfidf_baseline]
    fused = score_fusion.run_score_fusion(runs, str(tmp_path / "fused"), cfg.data, "per_genre")
    # Classical runs save out-of-fold train scores: the weight is chosen there, not on dev.
    assert fused["weights_chosen_on"] == "train_oof"
    saved = np.load(os.path.join(tfidf_baseline, "probabilities.npz"))
    assert saved["train_oof"].shape == (len(saved["train_oof_ids"]), len(results["genres"]))
    # A score fusion saves fused out-of-fold scores too, so it can be a member of another.
    assert np.load(tmp_path / "fused" / "probabilities.npz")["train_oof"].shape[0] > 0
    assert fused["threshold_rule"] == "per_genre" and fused["splits"]["test"]["n"] == test["n"]
    assert sum(fused["weights"].values()) == pytest.approx(1.0)
    # Three runs (a score fusion is a run too): equal weights.
    three = score_fusion.run_score_fusion([*runs, str(tmp_path / "fused")], str(tmp_path / "three"),
                                          cfg.data)
    assert list(three["weights"].values()) == pytest.approx([1 / 3] * 3)
    assert three["threshold_rule"] == "prevalence"  # the default rule of cfg.evaluation
    with pytest.raises(ValueError, match="not a finished run"):
        score_fusion.run_score_fusion([str(tmp_path), runs[1]], str(tmp_path / "x"))


def test_score_fusion_weight_is_chosen_on_dev():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 3)) > 0.5).astype(float)
    informative = y * 0.8 + rng.random((50, 3)) * 0.2
    noise = rng.random((50, 3))
    weight, score = score_fusion.choose_weight(informative, noise, y)
    assert weight > 0.5 and score > 0.95  # leans on the informative model
    fused, (w, rest) = score_fusion.fuse([{"dev": noise, "test": noise},
                                          {"dev": informative, "test": informative}], y,
                                         space="probability")
    assert w < 0.5 and rest == 1 - w and np.allclose(fused["test"], w * noise + (1 - w) * informative)
    with pytest.raises(ValueError, match="at least two runs"):
        score_fusion.fuse([{"dev": noise}], y)


def test_ensemble_selection_picks_complementary_runs_on_dev_and_skips_noise():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 4)) > 0.5).astype(float)
    # Two runs, each informative on half of the genres (like a poster and a text model).
    left = np.where([1, 1, 0, 0], y * 0.6 + rng.random((80, 4)) * 0.4, rng.random((80, 4)))
    right = np.where([0, 0, 1, 1], y * 0.6 + rng.random((80, 4)) * 0.4, rng.random((80, 4)))
    noise = rng.random((80, 4))
    members = [{"dev": p, "test": p} for p in (noise, left, right)]
    fused, weights = score_fusion.fuse(members, y, weighting="select")
    assert weights[0] == 0 and weights[1] > 0 and weights[2] > 0 and sum(weights) == pytest.approx(1)
    best_single = max(metrics.mean_average_precision(y, p) for p in (left, right))
    assert metrics.mean_average_precision(y, fused["dev"]) > best_single
    with pytest.raises(ValueError, match="weighting must be one of"):
        score_fusion.fuse(members, y, weighting="stacking")


def test_summary_has_prior_first_and_spread_over_seeds():
    def result(value):
        scores = {"micro_f1": value, "macro_f1": value, "mAP": value}
        return {"splits": {"test": {"tuned": scores, "prior": {k: 0.1 for k in scores}}}}

    runs = [("a", 0, result(0.5)), ("a", 1, result(0.7)), ("b", 0, result(0.2))]
    summary, per_run = common.summarize_runs(runs, ["micro_f1", "macro_f1", "mAP"])
    assert summary["model"].tolist() == ["prior (train frequency)", "a", "b"]
    assert summary.loc[1, "mAP"] == 0.6 and round(summary.loc[1, "mAP_std"], 6) == 0.1
    assert summary.loc[0, "seeds"] == 2 and len(per_run) == 5


def test_fusion_verdict_says_when_fusion_does_not_win():
    import pandas as pd

    summary = pd.DataFrame({"model": ["prior (train frequency)", "cnn", "lstm", "fusion_gmu",
                                      "fusion_gmu (poster missing)", "tfidf+poster + logistic regression"],
                            "mAP": [0.1, 0.2, 0.3, 0.25, 0.9, 0.2],
                            "macro_f1": [0.1, 0.2, 0.2, 0.3, 0.9, 0.1],
                            # dev picks the rows: the tfidf+poster row on dev, though fusion_gmu wins on test
                            "dev mAP": [0.1, 0.2, 0.3, 0.2, 0.9, 0.25]})
    fused = {"fusion_gmu", "tfidf+poster + logistic regression"}
    verdict = common.fusion_verdict(summary, fused)
    assert "fused **tfidf+poster + logistic regression**, unimodal **lstm**" in verdict
    assert "test mAP: the fused row (0.200) does NOT beat the unimodal row (0.300)" in verdict
    assert "test macro_f1: the fused row (0.100) does NOT beat" in verdict


@pytest.mark.slow
def test_score_fusion_refuses_runs_of_different_tasks(tfidf_baseline, tmp_path):
    from mmgenre import files, runs

    shutil.copytree(tfidf_baseline, tmp_path / "b")
    metrics = json.load(open(tmp_path / "b" / "metrics.json"))
    files.write_json(str(tmp_path / "b" / "metrics.json"), {**metrics, "task": "single"})
    runs.mark_complete(str(tmp_path / "b"))
    with pytest.raises(ValueError, match="'multilabel' run and .* a 'single' run"):
        score_fusion.run_score_fusion([tfidf_baseline, str(tmp_path / "b")], str(tmp_path / "f"))


@pytest.mark.slow
def test_score_fusion_refuses_runs_trained_on_other_data(synthetic_dir, tfidf_baseline, tmp_path):
    import pandas as pd

    other = tmp_path / "other"
    shutil.copytree(synthetic_dir, other)
    movies = pd.read_csv(other / "movies.csv", keep_default_na=False)
    movies.loc[0, "overview"] = "an overview edited after the first run"  # same ids, same genres
    movies.to_csv(other / "movies.csv", index=False)
    cfg = tiny_config(synthetic_dir, "lstm")
    run_classical(tiny_config(other, "lstm").data, "tfidf", str(tmp_path / "b"))
    with pytest.raises(ValueError, match="trained on other data .* one dataset only"):
        score_fusion.run_score_fusion([tfidf_baseline, str(tmp_path / "b")], str(tmp_path / "f"),
                                      cfg.data)
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
def test_score_fusion_takes_the_dataset_from_another_folder(synthetic_dir, tfidf_baseline, tmp_path,
                                                            monkeypatch, capsys):
    from mmgenre.cli import main

    shutil.copytree(tfidf_baseline, tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs_ = [tfidf_baseline, str(tmp_path / "b")]
    assert main(["score-fusion", *runs_, "--out", str(tmp_path / "f1")]) == 2  # no config: no data
    assert not (tmp_path / "f1").exists()
    assert main(["score-fusion", *runs_, "--data", str(synthetic_dir), "--out",
                 str(tmp_path / "f2")]) == 0
    assert (tmp_path / "f2" / "complete.json").exists()
