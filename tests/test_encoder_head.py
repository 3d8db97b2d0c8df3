"""The encoder head: a Keras head trained on cached features behind frozen backbones, saved as
one graph from raw inputs, and searched with keras-tuner on cross-validated train mAP."""

import os

import numpy as np
import pytest
import yaml
from conftest import tiny_config
from helpers import load_each_file_once

DIMS = {"tfidf": 50, "minilm": 8, "efficientnet_lite0": 6}


def test_wide_and_deep_head_keeps_tfidf_linear_and_gmu_needs_both_inputs():
    from mmgenre.models.encoder_head import feature_head

    linear = feature_head(DIMS, 4)
    assert [layer.name for layer in linear.layers if layer.name.endswith("logits")] == ["logits"]
    deep = feature_head(DIMS, 4, fusion="gmu", units=5)
    # TF-IDF reaches the logits through one Dense layer; the encoders through the GMU.
    assert deep.get_layer("wide_logits").kernel.shape == (50, 4)
    assert deep.get_layer("gmu").w_v.shape == (6, 5) and deep.get_layer("gmu").w_t.shape == (8, 5)
    x = {f: np.ones((3, d), "float32") for f, d in DIMS.items()}
    assert deep.predict(x, verbose=0).shape == (3, 4)
    with pytest.raises(ValueError, match="gmu.*lack one"):
        feature_head({"tfidf": 50, "minilm": 8}, 4, fusion="gmu", units=5)
    with pytest.raises(ValueError, match="TF-IDF alone takes units: 0"):
        feature_head({"tfidf": 50}, 4, units=5)


def test_modality_dropout_drops_whole_blocks_only_while_training():
    import keras

    from mmgenre.models.encoder_head import feature_head

    head = feature_head({"minilm": 8}, 2, modality_dropout=0.5)
    block = head.get_layer("minilm_block_dropout")
    x = np.ones((400, 8), "float32")
    dropped = np.asarray(block(x, training=True))
    rows_zero = (dropped == 0).all(axis=1)
    assert 0.3 < rows_zero.mean() < 0.7  # whole rows, about half of them
    assert ((dropped == 0) == rows_zero[:, None]).all()
    np.testing.assert_array_equal(np.asarray(block(x, training=False)), x)
    assert isinstance(block, keras.layers.Dropout)


def head_config(data_path, features, **params):
    return tiny_config(data_path, "encoder_head", {"features": features, "folds": 2, **params},
                       data={"limit": 40, "batch_size": 32},
                       train={"epochs": 12, "learning_rate": 0.02, "loss": "balanced"})


@pytest.mark.slow
def test_encoder_head_run_is_one_graph_that_reproduces_its_scores(encoder_home, synthetic_dir,
                                                                   tmp_path, monkeypatch):
    from mmgenre.inference import evaluate_run, load_run, predict_movie
    from mmgenre.training.trainer import train_and_evaluate

    cfg = head_config(synthetic_dir, ["tfidf", "minilm", "efficientnet_lite0"], units=16)
    run_dir = str(tmp_path / "run")
    results = train_and_evaluate(cfg, run_dir)
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.2
    assert test["at_0.5"]["brier"] < test["prior"]["brier"]  # calibrated after training
    assert results["graph_check_max_diff"] < 1e-4
    again_dir = str(tmp_path / "again")
    loaded = load_each_file_once(monkeypatch)  # predict_movie's load_run takes evaluate's model
    again = evaluate_run(run_dir, cfg.data.path, split="test", out_dir=again_dir)
    assert again["splits"]["test"]["at_0.5"]["mAP"] == pytest.approx(test["at_0.5"]["mAP"], abs=1e-4)
    # One movie through the reloaded graph scores as the reloaded batch evaluation did.
    import pandas as pd

    with np.load(os.path.join(again_dir, "probabilities.npz")) as saved:
        movie_id, expected = saved["test_ids"][0], dict(zip(again["genres"], saved["test"][0]))
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"), keep_default_na=False).set_index("id")
    movie = {"overview": movies.loc[movie_id, "overview"],
             "poster": os.path.join(synthetic_dir, movies.loc[movie_id, "poster"])}
    for genre, p, _, _ in predict_movie(load_run(run_dir), **movie):
        assert p == pytest.approx(expected[genre], abs=1e-5), genre
    assert len(loaded) == 1


@pytest.mark.slow
def test_head_search_scores_trials_on_cross_validated_train_map(synthetic_dir, tmp_path,
                                                                monkeypatch):
    """Two trials of a TF-IDF head (no encoder to prepare): cv_train_mAP above the prior's,
    trials table written, best config a runnable encoder_head config; dev never read; the
    whole graph over the encoders is never built (trials train heads on the features)."""
    from mmgenre.training import fit
    from mmgenre.tuning.search import load_search_config, run_search

    def no_whole_graph(*args, **kwargs):
        raise AssertionError("a head search built the whole graph")

    monkeypatch.setattr(fit, "build_for_data", no_whole_graph)

    experiment = tmp_path / "experiment.yaml"
    cfg = head_config(synthetic_dir, ["tfidf"], units=0)
    experiment.write_text(yaml.safe_dump(cfg.to_dict()))
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({
        "experiment": str(experiment), "max_trials": 2, "directory": str(tmp_path / "s"),
        "space": {"model.params.l2": {"type": "choice", "values": [1e-5, 1e-2]},
                  "train.epochs": {"type": "choice", "values": [5, 30]}}}))
    table, best = run_search(load_search_config(str(search)), verbose=0)
    assert list(table["status"]) == ["COMPLETED", "COMPLETED"]
    prior_map = 0.25  # 5 genres on about a quarter of the movies each: a constant scores ~0.25
    assert table["objective"].max() > prior_map + 0.2
    assert best.model.name == "encoder_head"
    assert os.path.exists(tmp_path / "s" / "best_config.yaml")


def test_head_search_refuses_hyperband_and_a_dev_objective(synthetic_dir, tmp_path):
    from mmgenre.config import ConfigError
    from mmgenre.tuning.search import load_search_config, run_search

    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(head_config(synthetic_dir, ["tfidf"]).to_dict()))
    for change, message in (({"tuner": "hyperband"}, "hyperband"),
                            ({"objective": "val_pr_auc"}, "scored on cv_train_mAP"),
                            ({"space": {"model.params.features": {"type": "choice",
                                                                  "values": ["tfidf"]}}},
                             "no hyperparameter 'features'")):
        search = tmp_path / "search.yaml"
        search.write_text(yaml.safe_dump({
            "experiment": str(experiment), "directory": str(tmp_path / "s"),
            "space": {"model.params.l2": {"type": "choice", "values": [1e-5, 1e-2]}}, **change}))
        with pytest.raises(ConfigError, match=message):
            run_search(load_search_config(str(search)), verbose=0)
