"""Export on raw inputs, batch prediction and single-movie prediction of trained runs."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import SHARED_RUNS_GROUP
from helpers import load_each_file_once

# Slow (trains: left out of the quick tier); in the shared runs' xdist group (conftest).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SHARED_RUNS_GROUP)]


@pytest.fixture(scope="module")
def trained(shared_runs, tmp_path_factory):
    """(a folder for exports, {name: shared run}): export must reproduce predict, whatever
    the model learned."""
    return tmp_path_factory.mktemp("serving"), {name: shared_runs[name] for name in (
        "cnn", "lstm", "bilstm_attention", "fusion")}


# One of each export the wrapper builds: poster decoding, tokenizing (with a custom attention
# layer), and both inputs with an absent one. The lstm's export is the TFLite test's; the other
# families' layers are Keras' own (test_travel scores every kind from its best.keras).
EXPORTED = ("cnn", "bilstm_attention", "fusion")


_LOAD = """
import json, sys
import tensorflow as tf
out = []
for folder, poster, overview in json.loads(sys.argv[1]):
    model = tf.saved_model.load(folder)
    raw = {}
    if poster is not None:
        raw["poster"] = tf.constant([open(poster, "rb").read() if poster else b""])
    if overview is not None:
        raw["overview"] = tf.constant([overview])
    result = model.serve(raw)
    out.append({"p": result["probabilities"].numpy()[0].tolist(),
                "on": result["predicted"].numpy()[0].tolist(),
                "genres": [g.decode() for g in model.genres()["genres"].numpy()]})
print(json.dumps(out))
"""


def test_exported_models_match_predict_on_raw_inputs_in_a_fresh_process(trained, synthetic_dir,
                                                                         monkeypatch):
    from mmgenre.inference import load_run, predict_movie
    from mmgenre.serving.export import export_run

    load_each_file_once(monkeypatch)  # export takes the model load_run loaded
    root, runs_ = trained
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"))
    poster = os.path.join(synthetic_dir, movies["poster"][0])
    overview = movies["overview"][0]
    cases, expected = [], []
    for name in EXPORTED:
        run_dir = runs_[name]
        run = load_run(run_dir)
        folder = export_run(run_dir, str(root / f"export-{name}"))
        given = {"poster": poster if "poster" in run.modalities else None,
                 "overview": overview if "overview" in run.modalities else None}
        cases.append([folder, given["poster"], given["overview"]])
        expected.append(predict_movie(run, **given))
        if name == "fusion":  # an empty string is a missing input, like predict's absent one
            cases.append([folder, "", overview])
            expected.append(predict_movie(run, overview=overview))
    done = subprocess.run([sys.executable, "-c", _LOAD, json.dumps(cases)], check=True,
                          capture_output=True, text=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for (folder, _, _), want, result in zip(cases, expected, got):
        probs = dict(zip(result["genres"], result["p"]))
        flags = dict(zip(result["genres"], result["on"]))
        for genre, p, on, _ in want:
            assert probs[genre] == pytest.approx(p, abs=1e-5), (folder, genre)
            assert flags[genre] == on, (folder, genre)
        assert json.load(open(os.path.join(folder, "genres.json")))["genres"] == result["genres"]


def test_tflite_export_of_the_cnn_matches_keras(trained, tmp_path):
    import numpy as np
    import tensorflow as tf

    from mmgenre.models.saving import load_model
    from mmgenre.serving.export import export_run

    _, runs_ = trained
    folder = export_run(runs_["cnn"], str(tmp_path / "cnn-tflite"), fmt="tflite")
    interpreter = tf.lite.Interpreter(os.path.join(folder, "model.tflite"))
    runner = interpreter.get_signature_runner("serve")
    poster = np.random.default_rng(0).random((1, 32, 32, 3)).astype("float32")
    expected = load_model(os.path.join(runs_["cnn"], "best.keras")).predict({"poster": poster}, verbose=0)
    np.testing.assert_allclose(runner(poster=poster)["probabilities"], expected, atol=1e-5)
    assert json.load(open(os.path.join(folder, "genres.json")))["needs_flex_delegate"] is False
    with pytest.raises(ValueError, match="--format must be one of"):
        export_run(runs_["cnn"], str(tmp_path / "x"), fmt="onnx")


def test_tflite_export_says_when_it_needs_the_flex_delegate(trained, tmp_path, capsys):
    from mmgenre.serving.export import export_run

    _, runs_ = trained
    folder = export_run(runs_["lstm"], str(tmp_path / "lstm-tflite"), fmt="tflite")
    assert json.load(open(os.path.join(folder, "genres.json")))["needs_flex_delegate"] is True
    assert "Flex delegate" in capsys.readouterr().err


def test_export_replaces_only_what_mmgenre_wrote(trained, tmp_path):
    from mmgenre.runs import COMPLETE, RunFolderError
    from mmgenre.serving.export import export_run

    _, runs_ = trained
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    with pytest.raises(RunFolderError, match="did not write .*--overwrite"):
        export_run(runs_["cnn"], str(user))
    assert (user / "notes.txt").read_text() == "my notes"
    # A killed export's staging folder is cleared by the next export to the same place.
    stale = tmp_path / "served.tmp999999999"
    stale.mkdir()
    folder = export_run(runs_["cnn"], str(tmp_path / "served"))
    assert not stale.exists()
    export_run(runs_["cnn"], folder)  # an earlier export is replaced
    assert os.path.exists(os.path.join(folder, "saved_model.pb"))
    export_run(runs_["cnn"], str(user), overwrite=True)
    assert not (user / "notes.txt").exists()
    # An unfinished run has no dev thresholds to serve with: refused, naming the fix.
    unfinished = tmp_path / "unfinished"
    import shutil

    shutil.copytree(runs_["cnn"], unfinished)
    os.remove(unfinished / COMPLETE)
    with pytest.raises(RunFolderError, match="not a finished run .*mmgenre train --config"):
        export_run(str(unfinished), str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_batch_prediction_writes_every_movie_with_its_predicted_genres(trained, synthetic_dir, tmp_path,
                                                                       capsys):
    from mmgenre.cli import main

    _, runs_ = trained
    out = str(tmp_path / "predictions.csv")
    assert main(["predict", runs_["fusion"], "--data", synthetic_dir, "--split", "test", "--out", out]) == 0
    assert "movies/s" in capsys.readouterr().err
    frame = pd.read_csv(out, keep_default_na=False)
    genres = json.load(open(os.path.join(runs_["fusion"], "genres.json")))["genres"]
    thresholds = json.load(open(os.path.join(runs_["fusion"], "thresholds.json")))["thresholds"]
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"))
    assert len(frame) == (movies["split"] == "test").sum()
    assert list(frame.columns) == ["id", "split", *genres, "predicted"]
    for _, row in frame.head(10).iterrows():
        on = {g for g in genres if row[g] >= thresholds[g]}
        assert set(filter(None, row["predicted"].split("|"))) == on
    # Again onto the earlier predictions: replaced. Onto a CSV of the user's: refused, untouched.
    assert main(["predict", runs_["fusion"], "--data", synthetic_dir, "--split", "test", "--out", out]) == 0
    mine = tmp_path / "ratings.csv"
    mine.write_text("title,rating\nAlien,9\n")
    assert main(["predict", runs_["fusion"], "--data", synthetic_dir, "--out", str(mine)]) == 2
    assert mine.read_text() == "title,rating\nAlien,9\n" and "--overwrite" in capsys.readouterr().err


def test_single_movie_predict_shows_thresholds_and_never_hides_a_predicted_genre(trained, synthetic_dir,
                                                                                 capsys):
    from mmgenre.cli import main

    _, runs_ = trained
    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"))
    # A fused run takes one input alone.
    assert main(["predict", runs_["fusion"], "--overview", movies["overview"][0], "--json",
                 "--top", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)["genres"]
    predicted = [g for g in shown if g["predicted"]]
    assert len(shown) == max(1, len(predicted)) and all("threshold" in g for g in shown)
    assert main(["predict", runs_["cnn"], "--overview", "x"]) == 2
    assert "does not take a overview" in capsys.readouterr().err
