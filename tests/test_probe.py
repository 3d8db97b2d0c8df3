"""The linear probe: one Keras graph from raw inputs to calibrated probabilities, its head
solved on cached features (tiny encoders made at run time, nothing downloaded)."""

import os

import numpy as np
import pytest
from conftest import tiny_config
from helpers import load_each_file_once
from sklearn.linear_model import LogisticRegression

# Slow (trains or embeds: left out of the quick tier); one xdist group, so its module fixtures train once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("probe")]


def probe_config(data_path, features, limit=None, **params):
    """Posters at the test EfficientNet-Lite0's 32x32 (conftest); ``limit`` rows per split keep the
    encoders quick."""
    return tiny_config(data_path, "linear_probe", {"features": features, "folds": 3, **params},
                       data={"limit": limit})


@pytest.fixture(scope="module")
def fused_run(encoder_home, synthetic_dir, tmp_path_factory):
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf", "minilm", "efficientnet_lite0"], limit=40, c=0.3)
    run_dir = str(tmp_path_factory.mktemp("probe") / "run")
    return cfg, run_dir, train_and_evaluate(cfg, run_dir)


@pytest.fixture(scope="module")
def text_run(encoder_home, synthetic_dir, tmp_path_factory):
    """TF-IDF + MiniLM, C fixed, no calibration: the head alone, as scikit-learn would fit it."""
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf", "minilm"], c=0.3, calibration="none")
    run_dir = str(tmp_path_factory.mktemp("probe-text") / "run")
    return cfg, run_dir, train_and_evaluate(cfg, run_dir)


def test_fused_probe_learns_is_calibrated_and_the_saved_graph_reproduces_it(fused_run):
    from mmgenre.inference import evaluate_run

    cfg, run_dir, results = fused_run
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.2  # 40 movies per split
    assert results["graph_check_max_diff"] < 1e-4
    # Probabilities, not just scores: a lower Brier score than the (calibrated) prior's.
    assert test["at_0.5"]["brier"] < test["prior"]["brier"]
    # The whole graph on raw inputs (overview strings, posters) scores what the solver scored.
    again = evaluate_run(run_dir, cfg.data.path, split="test", out_dir=os.path.join(run_dir, "again"))
    assert again["splits"]["test"]["at_0.5"]["mAP"] == pytest.approx(test["at_0.5"]["mAP"], abs=1e-4)


_LOAD = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  the keras-hub tokenizer's ops live there
folder, overview = json.loads(sys.argv[1])
model = tf.saved_model.load(folder)
out = model.serve({"overview": tf.constant([overview])})
print(json.dumps({"p": out["probabilities"].numpy()[0].tolist(),
                  "genres": [g.decode() for g in model.genres()["genres"].numpy()]}))
"""


def test_exported_probe_matches_predict_on_raw_inputs_in_a_fresh_process(text_run, synthetic_dir,
                                                                         monkeypatch):
    """Raw overview strings through TF-IDF and the keras-hub tokenizer in a process with
    TensorFlow and tensorflow_text only (poster decoding in exports: test_serving)."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from mmgenre.inference import load_run, predict_movie
    from mmgenre.serving.export import export_run

    _, run_dir, _ = text_run
    load_each_file_once(monkeypatch)  # load_run takes the model export loaded
    overview = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"))["overview"][0]
    folder = export_run(run_dir, os.path.join(os.path.dirname(run_dir), "export"))
    want = predict_movie(load_run(run_dir), overview=overview)
    done = subprocess.run([sys.executable, "-c", _LOAD, json.dumps([folder, overview])],
                          check=True, capture_output=True, text=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    probs = dict(zip(got["genres"], got["p"]))
    for genre, p, _, _ in want:
        assert probs[genre] == pytest.approx(p, abs=1e-5), genre


def test_probe_head_is_scikit_learns_regression_and_platt_calibrates(text_run):
    import keras

    from mmgenre.data.prepare import prepare_data
    from mmgenre.evaluation.metrics import calibration_metrics
    from mmgenre.models import registry
    from mmgenre.models.saving import load_model
    from mmgenre.training.calibration import platt, sigmoid
    from mmgenre.training.cross_validation import out_of_fold_logits
    from mmgenre.training.probe_features import split_features

    cfg, run_dir, results = text_run
    model = load_model(os.path.join(run_dir, "best.keras"))
    prepared = prepare_data(cfg.data, registry.get("linear_probe", cfg.model.params),
                            show_progress=False)
    (train, y_train), (test, _) = prepared.splits["train"], prepared.splits["test"]
    x_train = split_features(model, ["tfidf", "minilm"], train)
    x_test = split_features(model, ["tfidf", "minilm"], test)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)
    got = logits.predict({"overview": np.asarray(list(test["overview"]), dtype=object)}, verbose=0)
    for g in range(y_train.shape[1]):  # the same optimum as an independent scikit-learn fit
        reference = LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000).fit(
            x_train, y_train[:, g])
        np.testing.assert_allclose(got[:, g], reference.decision_function(x_test), atol=1e-4)
    # The balanced regression's raw sigmoid overstates rare genres; Platt scaling fitted on
    # out-of-fold train logits keeps each genre's ranking and lowers the calibration error.
    y_test = prepared.splits["test"][1]
    scale, offset = platt(out_of_fold_logits(x_train, y_train, 0.3, 3), y_train)
    raw, calibrated = sigmoid(got), sigmoid(scale * got + offset)
    assert (scale > 0).all()
    assert calibration_metrics(y_test, calibrated)["ece"] < calibration_metrics(y_test, raw)["ece"]
    assert calibration_metrics(y_test, calibrated)["brier"] < calibration_metrics(y_test, raw)["brier"]
    assert results["splits"]["test"]["at_0.5"]["ece"] == pytest.approx(
        calibration_metrics(y_test, raw)["ece"], abs=1e-4)


def test_probe_chooses_c_and_thresholds_on_cross_validated_train_scores(synthetic_dir, tmp_path):
    from mmgenre.config import ConfigError
    from mmgenre.data.prepare import prepare_data
    from mmgenre.files import read_json
    from mmgenre.models import registry
    from mmgenre.training.thresholds import choose as choose_thresholds
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf"], folds=2)
    cfg.evaluation.threshold_split = "train_oof"
    results = train_and_evaluate(cfg, str(tmp_path / "r"))
    cv = results["cv_mAP"]
    assert set(cv) == {"0.003", "0.01", "0.03", "0.1", "0.3", "1", "3"}
    assert cv[f"{results['C']:g}"] == max(cv.values())
    assert results["cv_train_mAP"] == pytest.approx(max(cv.values()), abs=1e-4)
    # Thresholds from the out-of-fold train probabilities, not from dev.
    y_train = prepare_data(cfg.data, registry.get("linear_probe", cfg.model.params),
                           show_progress=False).splits["train"][1]
    oof = np.load(tmp_path / "r" / "probabilities.npz")["train_oof"]
    saved = np.array(list(read_json(str(tmp_path / "r" / "thresholds.json"))["thresholds"].values()))
    np.testing.assert_allclose(saved, choose_thresholds("prevalence", y_train, oof, y_train), atol=1e-6)
    assert results["threshold_split"] == "train_oof"
    # Back to dev thresholds: a re-score from the saved probabilities, the fit's facts kept.
    cfg.evaluation.threshold_split = "dev"
    rescored = train_and_evaluate(cfg, str(tmp_path / "r"))
    assert rescored["splits"]["test"]["at_0.5"] == results["splits"]["test"]["at_0.5"]
    assert (rescored["C"], rescored["cv_train_mAP"]) == (results["C"], results["cv_train_mAP"])
    assert rescored["threshold_split"] == "dev"
    with pytest.raises(ConfigError, match="needs out-of-fold train probabilities"):
        gradient = tiny_config(synthetic_dir, "bag_of_words", evaluation={"threshold_split": "train_oof"})
        train_and_evaluate(gradient, str(tmp_path / "g"))
    assert not os.path.exists(tmp_path / "g" / "config.yaml")  # refused before anything was written


def test_probe_configs_are_checked(encoder_home, synthetic_dir, tmp_path, monkeypatch):
    from mmgenre.training import fit
    from mmgenre.training.graph_check import FeatureMismatch
    from mmgenre.training.trainer import train_and_evaluate

    with pytest.raises(ValueError, match="features must be 'tfidf' or a known encoder"):
        train_and_evaluate(probe_config(synthetic_dir, ["bert"]), str(tmp_path / "a"))
    with monkeypatch.context() as patched:  # refused before anything is embedded or solved
        patched.setattr(fit, "HeadFirst", lambda *args: pytest.fail("fitting began"))
        with pytest.raises(ValueError, match="multi-label"):
            train_and_evaluate(tiny_config(synthetic_dir, "linear_probe", {"features": ["tfidf"]},
                                           data={"task": "single"}), str(tmp_path / "b"))
    # Posters at another size than the encoder's own: the graph would not reproduce the cached
    # embeddings, so the run stops before saving a model that scores differently.
    cfg = tiny_config(synthetic_dir, "linear_probe", {"features": ["efficientnet_lite0"], "c": 0.1,
                                                      "folds": 2}, data={"image_size": [48, 48]})
    with pytest.raises(FeatureMismatch, match="data.image_size"):
        train_and_evaluate(cfg, str(tmp_path / "c"))
    assert not os.path.exists(os.path.join(tmp_path, "c", "best.keras"))


def test_embeddings_made_beforehand_leave_the_row_nothing_to_embed(encoder_home, synthetic_dir, tmp_path):
    """accuracy.py --row-processes embeds every row's inputs in a process of its own first
    (row_process.embed_row): the row then reads them and never loads an embedder for them."""
    from row_process import embed_row

    from mmgenre import progress
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf", "minilm"], limit=30, c=0.3)  # inputs no other test embeds
    first = len(progress.STEPS)
    embed_row([cfg, tiny_config(synthetic_dir, "bag_of_words")])  # a row without encoders is passed over
    embedded = [step for step, _ in progress.STEPS[first:]]
    assert len(embedded) == 3 and all(s.startswith("embed ") and "minilm" in s for s in embedded), embedded
    first = len(progress.STEPS)
    train_and_evaluate(cfg, str(tmp_path / "run"), verbose=0)
    assert not [s for s, _ in progress.STEPS[first:] if s.startswith("embed ")]
