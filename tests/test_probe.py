"""The linear probe: one Keras graph from raw inputs to calibrated probabilities, its head
solved on cached features (tiny encoders made at run time, nothing downloaded)."""

import os

import numpy as np
import pytest
from conftest import tiny_config
from sklearn.linear_model import LogisticRegression


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


_LOAD = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  the keras-hub tokenizer's ops live there
folder, poster, overview = json.loads(sys.argv[1])
model = tf.saved_model.load(folder)
out = model.serve({"poster": tf.constant([open(poster, "rb").read()]),
                   "overview": tf.constant([overview])})
print(json.dumps({"p": out["probabilities"].numpy()[0].tolist(),
                  "genres": [g.decode() for g in model.genres()["genres"].numpy()]}))
"""


def test_exported_probe_matches_predict_on_raw_inputs_in_a_fresh_process(fused_run, synthetic_dir):
    import json
    import subprocess
    import sys

    import pandas as pd

    from mmgenre.inference import load_run, predict_movie
    from mmgenre.serving.export import export_run

    _, run_dir, _ = fused_run
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"))
    poster, overview = os.path.join(synthetic_dir, movies["poster"][0]), movies["overview"][0]
    folder = export_run(run_dir, os.path.join(os.path.dirname(run_dir), "export"))
    want = predict_movie(load_run(run_dir), poster=poster, overview=overview)
    done = subprocess.run([sys.executable, "-c", _LOAD, json.dumps([folder, poster, overview])],
                          check=True, capture_output=True, text=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    probs = dict(zip(got["genres"], got["p"]))
    for genre, p, _, _ in want:
        assert probs[genre] == pytest.approx(p, abs=1e-5), genre


def test_probe_head_is_scikit_learns_regression_and_platt_calibrates(encoder_home, synthetic_dir,
                                                                     tmp_path):
    import keras

    from mmgenre.data.prepare import prepare_data
    from mmgenre.models import registry
    from mmgenre.training import solve
    from mmgenre.training.trainer import train_and_evaluate

    cfg = probe_config(synthetic_dir, ["tfidf", "minilm"], c=0.3, calibration="none")
    run_dir = str(tmp_path / "raw")
    results = train_and_evaluate(cfg, run_dir)
    from mmgenre.models.saving import load_model

    model = load_model(os.path.join(run_dir, "best.keras"))
    prepared = prepare_data(cfg.data, registry.get("linear_probe", cfg.model.params),
                            show_progress=False)
    (train, y_train), (test, _) = prepared.splits["train"], prepared.splits["test"]
    x_train = solve.split_features(model, ["tfidf", "minilm"], train)
    x_test = solve.split_features(model, ["tfidf", "minilm"], test)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)
    got = logits.predict({"overview": np.asarray(list(test["overview"]), dtype=object)}, verbose=0)
    for g in range(y_train.shape[1]):  # the same optimum as an independent scikit-learn fit
        reference = LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000).fit(
            x_train, y_train[:, g])
        np.testing.assert_allclose(got[:, g], reference.decision_function(x_test), atol=1e-4)
    # The balanced regression's raw sigmoid overstates rare genres; Platt on out-of-fold logits
    # brings the same ranking (same mAP) to a lower calibration error.
    cfg_platt = probe_config(synthetic_dir, ["tfidf", "minilm"], c=0.3)
    calibrated = train_and_evaluate(cfg_platt, str(tmp_path / "platt"))
    raw, platt = results["splits"]["test"]["at_0.5"], calibrated["splits"]["test"]["at_0.5"]
    assert platt["mAP"] == pytest.approx(raw["mAP"], abs=0.02)
    assert platt["ece"] < raw["ece"] and platt["brier"] < raw["brier"]


def test_probe_configs_are_checked(encoder_home, synthetic_dir, tmp_path):
    from mmgenre.training.solve import FeatureMismatch
    from mmgenre.training.trainer import train_and_evaluate

    with pytest.raises(ValueError, match="features must be 'tfidf' or a known encoder"):
        train_and_evaluate(probe_config(synthetic_dir, ["bert"]), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="multi-label model"):
        train_and_evaluate(tiny_config(synthetic_dir, "linear_probe", {"features": ["tfidf"]},
                                       data={"task": "single"}), str(tmp_path / "b"))
    # Posters at another size than the encoder's own: the graph would not reproduce the cached
    # embeddings, so the run stops before saving a model that scores differently.
    cfg = tiny_config(synthetic_dir, "linear_probe", {"features": ["efficientnet_lite0"], "c": 0.1,
                                                      "folds": 2})
    with pytest.raises(FeatureMismatch, match="data.image_size"):
        train_and_evaluate(cfg, str(tmp_path / "c"))
    assert not os.path.exists(os.path.join(tmp_path, "c", "best.keras"))
