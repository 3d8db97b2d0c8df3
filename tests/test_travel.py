"""Models that travel: every kind of run scores a dataset it was not trained on.

The other dataset has only a test split, spells genres another catalogue's way
(IMDb's "Sci-Fi", lower case), lists a genre no run learned ("Film-Noir") and
has rows with only an overview or only a poster. Nothing is refitted on it: the
run's thresholds and calibration apply unchanged, so a movie it shares with the
run's own test split gets the same probabilities.
"""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_RUNS_GROUP, tiny_config
from helpers import load_each_file_once

from mmgenre.training.trainer import train_and_evaluate

# Slow (trains: left out of the quick tier); in the shared runs' xdist group (conftest).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SHARED_RUNS_GROUP)]

IMDB_SPELLING = {"Science Fiction": "Sci-Fi", "Comedy": "comedy"}


@pytest.fixture(scope="module")
def travel_dir(synthetic_dir, tmp_path_factory):
    """The synthetic test movies as another catalogue would ship them: test split only, IMDb
    spellings, an unknown genre on every third movie, the first 6 without a poster, the next 3
    without an overview."""
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"), keep_default_na=False)
    movies = movies[movies["split"] == "test"].reset_index(drop=True)
    root = tmp_path_factory.mktemp("imdb-style")
    os.makedirs(root / "posters")
    for poster in movies["poster"]:
        shutil.copy(os.path.join(synthetic_dir, poster), root / poster)
    genres = [[IMDB_SPELLING.get(g, g) for g in row.split("|")] + (["Film-Noir"] if i % 3 == 0 else [])
              for i, row in enumerate(movies["genres"])]
    movies["genres"] = ["|".join(g) for g in genres]
    movies.loc[:5, "poster"] = ""
    movies.loc[6:8, "overview"] = ""
    movies.to_csv(root / "movies.csv", index=False)
    return str(root)


def _train(name, cfg, root):
    run_dir = str(root / name)
    train_and_evaluate(cfg, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="module")
def runs_of_every_kind(synthetic_dir, encoder_home, shared_runs, tmp_path_factory):
    """One tiny run of each kind: gradient poster and text models, a gradient fusion, a
    solved probe over both inputs, a Keras head on cached features, a score fusion."""
    from test_probe import probe_config

    from mmgenre.training.late_fusion import run_score_fusion

    root = tmp_path_factory.mktemp("travel-runs")
    out = {
        **{name: shared_runs[name] for name in ("cnn", "bag_of_words", "lstm", "fusion", "bilstm_attention",
                                                 "compact_resnet")},
        "linear_probe": _train("linear_probe", probe_config(
            synthetic_dir, ["tfidf", "efficientnet_lite0"], c=0.3), root),
        # int8 end to end: fitted on, and served through, the int8 LiteRT encoders.
        "int8_probe": _train("int8_probe", probe_config(
            synthetic_dir, ["tfidf", "minilm", "efficientnet_lite0"], c=0.3, precision="int8"), root),
        "int8_head": _train("int8_head", tiny_config(
            synthetic_dir, "encoder_head", {"features": ["minilm"], "folds": 2, "precision": "int8"},
            evaluation={"threshold_split": "train_oof"}), root),
        # A gradient model around a keras-hub encoder: raw overview strings in, tokenizer in the graph.
        "text_encoder": _train("text_encoder", tiny_config(
            synthetic_dir, "text_encoder", {"encoder": "minilm", "dense_units": 8}, train={"epochs": 1}),
            root),
        "encoder_head": _train("encoder_head", tiny_config(
            synthetic_dir, "encoder_head", {"features": ["tfidf"], "folds": 2},
            evaluation={"threshold_split": "train_oof"}), root),
    }
    # Three runs: equal weights (two would have a weight chosen on dev, possibly 0 for one).
    run_score_fusion([out["cnn"], out["bag_of_words"], out["fusion"]], str(root / "score_fusion"))
    out["score_fusion"] = str(root / "score_fusion")
    return out


KINDS = ("cnn", "compact_resnet", "bag_of_words", "lstm", "bilstm_attention", "text_encoder", "fusion",
         "linear_probe", "int8_probe", "int8_head", "encoder_head", "score_fusion")
# The kinds reading one input (the encoder heads here read TF-IDF, or MiniLM at int8, only).
ONE_INPUT = {"cnn": "poster", "compact_resnet": "poster", "bag_of_words": "overview", "lstm": "overview",
             "bilstm_attention": "overview", "text_encoder": "overview", "encoder_head": "overview",
             "int8_head": "overview"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_run_kind_scores_a_test_only_dataset_with_other_spellings(kind, runs_of_every_kind,
                                                                        travel_dir, tmp_path, capsys,
                                                                        monkeypatch):
    from mmgenre.cli import main

    run_dir = runs_of_every_kind[kind]
    loaded = load_each_file_once(monkeypatch)  # batch prediction takes evaluate's model
    out = str(tmp_path / "eval")
    # `mmgenre evaluate RUN --data DIR` as a user types it (the split defaults to test).
    assert main(["evaluate", run_dir, "--data", travel_dir, "--out", out]) == 0
    printed = capsys.readouterr().out
    saved = results = json.load(open(os.path.join(out, "metrics.json")))
    mapping = results["genre_mapping"]
    assert f"genre spellings mapped: {mapping['renamed']}" in printed  # printed and recorded
    assert mapping["renamed"] == {"Sci-Fi": "Science Fiction", "comedy": "Comedy"}
    # Every third test movie lists Film-Noir; a poster model cannot read 2 of them, a text model 1.
    assert mapping["ignored"] == {"Film-Noir": {"poster": 10, "overview": 11}.get(ONE_INPUT.get(kind), 12)}
    assert "Science Fiction" in mapping["shared"]
    run_metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    # The run's thresholds, as fitted in training; nothing chosen on this data.
    assert (saved["threshold_rule"], saved["threshold_split"]) == (
        run_metrics["threshold_rule"], run_metrics["threshold_split"])
    assert saved["thresholds_fitted"] == "in training"
    report = open(os.path.join(out, "report.md")).read()
    assert f"Film-Noir ({mapping['ignored']['Film-Noir']} movies)" in report
    assert "Sci-Fi -> Science Fiction" in report
    assert "prior (train frequency)" in report  # the run's train prior, though this data has no train
    # Movies shared with the run's own test split, with every input, score the same.
    with np.load(os.path.join(run_dir, "probabilities.npz")) as own, \
            np.load(os.path.join(out, "probabilities.npz")) as here:
        own_rows = {m: p for m, p in zip(own["test_ids"], own["test"])}
        movies = pd.read_csv(os.path.join(travel_dir, "movies.csv"), keep_default_na=False)
        complete = set(movies["id"][(movies["poster"] != "") & (movies["overview"] != "")])
        full = [i for i, m in enumerate(here["test_ids"]) if m in complete]
        assert len(full) >= 20
        np.testing.assert_allclose(here["test"][full],
                                   np.stack([own_rows[here["test_ids"][i]] for i in full]), atol=2e-4)
    # Batch prediction takes the same rows and gives the same probabilities.
    from mmgenre.serving.batch import predict_dataset

    predicted = predict_dataset(run_dir, travel_dir, str(tmp_path / "p.csv"), "test")
    frame = pd.read_csv(predicted["out"], keep_default_na=False)
    with np.load(os.path.join(out, "probabilities.npz")) as here:
        assert list(frame["id"]) == list(here["test_ids"])
        np.testing.assert_allclose(frame[results["genres"]].to_numpy(), here["test"], atol=1e-5)
    assert len(loaded) == 1  # the run's own model, loaded once
    inputs = saved["inputs"]
    if kind in ONE_INPUT:  # unimodal: rows without its input are counted, skipped
        poster = ONE_INPUT[kind] == "poster"
        assert inputs == {"skipped_without_input": 6 if poster else 3, "stand_in": 0}
        assert saved["splits"]["test"]["n"] == (30 if poster else 33)
    else:  # both inputs: text-only and poster-only rows are scored through the absent signal
        assert inputs == {"skipped_without_input": 0, "stand_in": 9}
        assert saved["splits"]["test"]["n"] == 36


def test_a_refusal_comes_before_any_model_loads(runs_of_every_kind, travel_dir, tmp_path, monkeypatch):
    from mmgenre import genres
    from mmgenre.inference import evaluate_run
    from mmgenre.models import saving
    from mmgenre.serving.batch import predict_dataset

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(saving, "load_model", no_loading)
    movies = pd.read_csv(os.path.join(travel_dir, "movies.csv"), keep_default_na=False)
    other = tmp_path / "westerns"
    shutil.copytree(travel_dir, other)
    movies.assign(genres="Western|Drama").to_csv(other / "movies.csv", index=False)
    with pytest.raises(ValueError, match=r"shares 1 genre\(s\) with the run \(\['Drama'\]\).*Western"):
        evaluate_run(runs_of_every_kind["linear_probe"], str(other), "test", out_dir=str(tmp_path / "a"))
    no_posters = tmp_path / "no-posters"
    shutil.copytree(travel_dir, no_posters)
    movies.assign(poster="").to_csv(no_posters / "movies.csv", index=False)
    with pytest.raises(ValueError, match=r"no-posters: no row has an input the model reads "
                                         r"\(poster\); 36 row\(s\) lack it"):
        evaluate_run(runs_of_every_kind["cnn"], str(no_posters), "test", out_dir=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="no row has an input the model reads"):
        predict_dataset(runs_of_every_kind["cnn"], str(no_posters), str(tmp_path / "p.csv"), "test")
    with pytest.raises(genres.GenreMapError, match="the run has no genre 'Noir Fiction'"):
        evaluate_run(runs_of_every_kind["cnn"], travel_dir, "test", out_dir=str(tmp_path / "c"),
                     genre_map=["Film-Noir=Noir Fiction"])
    only_train = tmp_path / "only-train"
    shutil.copytree(travel_dir, only_train)
    movies.assign(split="train").to_csv(only_train / "movies.csv", index=False)
    with pytest.raises(ValueError, match=r"only-train: split 'test' has no rows"):
        evaluate_run(runs_of_every_kind["fusion"], str(only_train), "test", out_dir=str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "p.csv")


def test_cli_evaluates_and_batch_predicts_with_a_genre_map(runs_of_every_kind, travel_dir, tmp_path,
                                                          capsys):
    from mmgenre.cli import main

    run_dir, out = runs_of_every_kind["score_fusion"], str(tmp_path / "eval")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("Film-Noir: Drama\n")
    assert main(["evaluate", run_dir, "--data", travel_dir, "--out", out, "--genre-map", str(mapping)]) == 0
    printed = capsys.readouterr()
    assert "genre spellings mapped" in printed.out and "Film-Noir" in printed.out
    assert "movies/s" in printed.err and "left" in printed.err
    saved = json.load(open(os.path.join(out, "metrics.json")))
    mapping = saved["genre_mapping"]
    assert mapping["ignored"] == {} and mapping["renamed"]["Film-Noir"] == "Drama"
    csv = str(tmp_path / "predictions.csv")
    assert main(["predict", runs_of_every_kind["fusion"], "--data", travel_dir, "--out", csv]) == 0
    frame = pd.read_csv(csv, keep_default_na=False)
    assert len(frame) == 36 and set(frame["split"]) == {"test"}  # text-only rows predicted too


def test_an_int8_run_exports_a_bundle_a_process_without_mmgenre_serves(runs_of_every_kind, travel_dir,
                                                                      tmp_path):
    import subprocess
    import sys

    from mmgenre.serving.batch import predict_dataset
    from mmgenre.serving.export import export_run

    run_dir = runs_of_every_kind["int8_probe"]
    with pytest.raises(ValueError, match="fitted on int8 encoder features; export it with --format int8"):
        export_run(run_dir, str(tmp_path / "float"))
    with pytest.raises(ValueError, match="--format int8 takes runs over pretrained encoders"):
        export_run(runs_of_every_kind["cnn"], str(tmp_path / "cnn"), "int8")
    out = export_run(run_dir, str(tmp_path / "bundle"), "int8")
    facts = json.load(open(os.path.join(out, "genres.json")))
    assert facts["fitted_at"] == "int8" and set(facts["encoders"]) == {"minilm", "efficientnet_lite0"}
    movies = pd.read_csv(os.path.join(travel_dir, "movies.csv"), keep_default_na=False).head(12)
    posters = [open(os.path.join(travel_dir, p), "rb").read().hex() if p else "" for p in movies["poster"]]
    code = (  # mmgenre blocked: the bundle's own loader is all a client needs
        "import json, sys\nsys.modules['mmgenre'] = None\n"
        f"sys.path.insert(0, {out!r})\nfrom mmgenre_int8 import Bundle\n"
        f"posters = [bytes.fromhex(h) for h in {posters!r}]\n"
        f"probabilities, predicted = Bundle({out!r}).predict(posters=posters, "
        f"overviews={list(movies['overview'])!r})\n"
        "print(json.dumps(probabilities.tolist()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    served = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    predicted = pd.read_csv(predict_dataset(run_dir, travel_dir, str(tmp_path / "p.csv"), "test")["out"],
                            keep_default_na=False).set_index("id")
    genres = json.load(open(os.path.join(out, "genres.json")))["genres"]
    # Text-only and poster-only rows included (the first 6 have no poster, the next 3 no overview).
    np.testing.assert_allclose(served, predicted.loc[list(movies["id"]), genres].to_numpy(), atol=1e-5)


def test_a_score_fusion_with_an_int8_member_is_a_report_saying_why(runs_of_every_kind, tmp_path):
    from mmgenre.training.late_fusion import run_score_fusion

    out = str(tmp_path / "fused")
    run_score_fusion([runs_of_every_kind["int8_probe"], runs_of_every_kind["linear_probe"],
                      runs_of_every_kind["bag_of_words"]], out)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["fused_model"] is None
    assert "served through int8 LiteRT encoders" in metrics["fused_model_note"]
    assert not os.path.exists(os.path.join(out, "best.keras"))
