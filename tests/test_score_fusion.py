"""Score fusion as a model: the ScoreFusion layer equals the NumPy fusion, and a fused folder
is a run that evaluate and predict take, with calibrated probabilities."""

import os

import keras
import numpy as np
import pytest
from conftest import SHARED_RUNS_GROUP, tiny_config
from helpers import load_each_file_once

from mmgenre.evaluation import saved_scores
from mmgenre.models.layers import ScoreFusion
from mmgenre.training import late_fusion as score_fusion


@pytest.mark.parametrize("space", ["logit_z", "probability"])
def test_score_fusion_layer_equals_the_numpy_fusion(space):
    rng = np.random.default_rng(0)
    members = [{s: rng.random((30, 4)).astype("float32") for s in ("dev", "test")}
               for _ in range(3)]
    members[0]["test"][0, 0] = 1.0  # a saturated probability is clipped the same way
    y = (rng.random((30, 4)) > 0.5).astype("float32")
    scores, weights = score_fusion.fuse_scores(members, y, "auto", space)
    layer = ScoreFusion(3, 4, space, name="fusion")
    layer.build(None)
    stats = [score_fusion.logit_statistics(m["dev"]) for m in members]
    layer.set_weights([np.stack([a for a, _ in stats]), np.stack([b for _, b in stats]),
                       np.asarray(weights, "float32")])
    out = keras.ops.convert_to_numpy(layer([m["test"] for m in members]))
    np.testing.assert_allclose(out, score_fusion.fused_logits(scores["test"], space), atol=1e-4)
    again = ScoreFusion.from_config(layer.get_config())
    assert (again.members, again.units, again.space) == (3, 4, space)
    with pytest.raises(ValueError, match="space must be"):
        ScoreFusion(2, 4, "rank")


@pytest.mark.slow
@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_fused_folder_is_a_calibrated_run_that_evaluate_and_predict_take(synthetic_dir, shared_runs,
                                                                         tfidf_baseline, tmp_path,
                                                                         monkeypatch):
    from mmgenre.evaluation.metrics import calibration_metrics
    from mmgenre.inference import evaluate_run, load_run, predict_movie
    from mmgenre.training.trainer import train_and_evaluate

    members = [shared_runs["cnn"], shared_runs["tfidf_probe"]]
    out = str(tmp_path / "fused")
    fused = score_fusion.run_score_fusion(members, out)
    assert fused["fused_model"] == "best.keras", fused["fused_model_note"]
    assert fused["calibration"] == "platt on dev"  # the cnn has no out-of-fold train scores
    saved = np.load(os.path.join(out, "probabilities.npz"))

    # The saved graph reproduces the fusion from raw posters and overviews.
    load_each_file_once(monkeypatch)  # load_run and export take the model evaluate loaded
    evaluate_run(out, split="test", out_dir=str(tmp_path / "eval"))
    again = np.load(tmp_path / "eval" / "probabilities.npz")
    assert again["test_ids"].tolist() == saved["test_ids"].tolist()
    np.testing.assert_allclose(again["test"], saved["test"], atol=1e-4)
    run = load_run(out)
    assert run.modalities == ("poster", "overview")
    poster = sorted(os.listdir(os.path.join(synthetic_dir, "posters")))[0]
    movie = predict_movie(run, poster=os.path.join(synthetic_dir, "posters", poster),
                          overview="a story")[0]
    assert 0.0 <= movie[1] <= 1.0

    # Exported, the fused graph serves raw poster bytes and text like any run.
    import tensorflow as tf

    from mmgenre.serving.export import export_run

    served = tf.saved_model.load(export_run(out, str(tmp_path / "export")))
    with open(os.path.join(synthetic_dir, "posters", poster), "rb") as f:
        result = served.serve({"poster": tf.constant([f.read()]), "overview": tf.constant(["a story"])})
    genres = [g.decode() for g in served.genres()["genres"].numpy()]
    served_probs = dict(zip(genres, result["probabilities"].numpy()[0]))
    for genre, p, _, _ in predict_movie(run, poster=os.path.join(synthetic_dir, "posters", poster),
                                        overview="a story"):
        assert served_probs[genre] == pytest.approx(p, abs=1e-5), genre

    # Platt after fusing: probabilities, where the sigmoid of z-scored logits is not one.
    prepared, aligned, _, _ = saved_scores.aligned_probabilities(members)
    uncalibrated, _ = score_fusion.fuse(aligned, prepared.splits["dev"][1])
    y_test = prepared.splits["test"][1]
    brier = [calibration_metrics(y_test, p)["brier"] for p in (saved["test"], uncalibrated["test"])]
    assert brier[0] < brier[1], brier

    # A member without a graph (a classical baseline): the folder is a report, and a rerun
    # into a folder that held a fused model removes that model.
    report = score_fusion.run_score_fusion([members[0], tfidf_baseline], out)
    assert report["fused_model"] is None and "no best.keras" in report["fused_model_note"]
    assert not os.path.exists(os.path.join(out, "best.keras"))
    assert not os.path.exists(os.path.join(out, "config.yaml"))
    with pytest.raises(FileNotFoundError, match="a score-fusion report without a model .*no best.keras"):
        load_run(out)

    # A run of weight 0 (ensemble selection leaves most there) stays out of the graph, so it
    # cannot stop the fusion from being a model.
    def two_of_three(members, select_y, weighting, space, select_on):
        z = [score_fusion.to_space(m, space) for m in members]
        return {s: 0.5 * z[0][s] + 0.5 * z[1][s] for s in z[0]}, [0.5, 0.5, 0.0]

    monkeypatch.setattr(score_fusion, "fuse_scores", two_of_three)
    out3 = str(tmp_path / "selected")
    selected = score_fusion.run_score_fusion([*members, tfidf_baseline], out3)
    assert selected["fused_model"] == "best.keras", selected["fused_model_note"]
    assert sorted(layer.name for layer in load_run(out3).model.layers
                  if layer.name.startswith("member_")) == ["member_0", "member_1"]

    with pytest.raises(ValueError, match="made from trained runs by `mmgenre score-fusion"):
        train_and_evaluate(tiny_config(synthetic_dir, "score_fusion"), str(tmp_path / "t"))

    # A member fed token ids (the study's text models) gets its run's vectorizer in front.
    out4 = str(tmp_path / "with_words")
    words = score_fusion.run_score_fusion([members[0], shared_runs["bag_of_words"]], out4)
    assert words["fused_model"] == "best.keras", words["fused_model_note"]
    evaluate_run(out4, split="test", out_dir=str(tmp_path / "eval4"))
    np.testing.assert_allclose(np.load(tmp_path / "eval4" / "probabilities.npz")["test"],
                               np.load(os.path.join(out4, "probabilities.npz"))["test"], atol=1e-4)
