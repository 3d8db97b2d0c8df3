"""The linear probe: one Keras graph from raw inputs to calibrated probabilities, its head
solved on cached features (tiny encoders made at run time, nothing downloaded)."""

import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import tiny_config


def probe_config(data_path, features, **params):
    return tiny_config(data_path, "linear_probe", {"features": features, "folds": 3, **params},
                       data={"image_size": [224, 224]})


@pytest.fixture(scope="module")
def fused_run(encoder_home, synthetic_dir, tmp_path_factory):
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf", "minilm", "efficientnet_lite0"])
    run_dir = str(tmp_path_factory.mktemp("probe") / "run")
    return cfg, run_dir, train_and_evaluate(cfg, run_dir)


def test_fused_probe_learns_is_calibrated_and_the_saved_graph_reproduces_it(fused_run):
    from mmgenre.inference import evaluate_run

    cfg, run_dir, results = fused_run
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.3
    assert results["graph_check_max_diff"] < 1e-4
    assert set(results["cv_mAP"]) == {"0.003", "0.01", "0.03", "0.1", "0.3", "1", "3"}
    # Calibrated: mean predicted probability per genre near its train frequency, unlike the
    # balanced regression's raw sigmoid, which pushes rare genres towards 0.5.
    assert test["at_0.5"]["ece"] < 0.1
    # The whole graph on raw inputs (overview strings, posters) scores what the solver scored.
    again = evaluate_run(run_dir, cfg.data.path, split="test", out_dir=os.path.join(run_dir, "again"))
    assert again["splits"]["test"]["at_0.5"]["mAP"] == pytest.approx(test["at_0.5"]["mAP"], abs=1e-4)
