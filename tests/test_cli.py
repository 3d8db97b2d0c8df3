import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import SHARED_RUNS_GROUP

from mmgenre.cli import main


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom mmgenre import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\nassert 'tensorflow' not in sys.modules, 'tf imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "predict" in result.stdout


def test_synth_is_deterministic_per_seed(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--n", "12", "--seed", "3"]) == 0
    assert (tmp_path / "a/movies.csv").read_text() == (tmp_path / "b/movies.csv").read_text()
    first = sorted(os.listdir(tmp_path / "a/posters"))[0]
    assert (tmp_path / "a/posters" / first).read_bytes() == (tmp_path / "b/posters" / first).read_bytes()


@pytest.mark.slow
def test_train_evaluate_predict_end_to_end(tmp_path, mmimdb_dir, capsys):
    data = str(tmp_path / "data")
    other = str(tmp_path / "other")
    assert main(["synth", "--out", data, "--n", "160", "--seed", "5", "--image-size", "32", "32"]) == 0
    assert main(["synth", "--out", other, "--n", "60", "--seed", "9", "--image-size", "32", "32"]) == 0
    config = tmp_path / "cnn.yaml"
    config.write_text(yaml.safe_dump({
        "name": "e2e", "workdir": str(tmp_path / "runs/{name}"),
        "data": {"path": data, "image_size": [32, 32], "min_genre_count": 3, "batch_size": 16},
        "model": {"name": "cnn"}, "train": {"epochs": 20},
        "quick": {"train.epochs": 6}}))
    assert main(["train", "--config", str(config), "--quick", "--set", "train.learning_rate=0.003"]) == 0
    run_dir = str(tmp_path / "runs/e2e")
    assert "prior (train frequency)" in capsys.readouterr().out

    # Late fusion from the CLI (a run with itself: same scores, the rule as asked).
    assert main(["score-fusion", run_dir, run_dir, "--thresholds", "per_genre",
                 "--out", str(tmp_path / "fused")]) == 0
    assert "thresholds by rule 'per_genre'" in capsys.readouterr().out
    fused = json.load(open(tmp_path / "fused" / "metrics.json"))
    assert sum(fused["weights"].values()) == 1.0 and len(fused["weights"]) == 2

    # Judged on data it never saw (another seed), with the run's own thresholds.
    assert main(["evaluate", run_dir, "--data", other, "--split", "test"]) == 0
    scores = json.load(open(os.path.join(run_dir, "eval/other-test/metrics.json")))
    assert scores["splits"]["test"]["at_0.5"]["mAP"] > scores["splits"]["test"]["prior"]["mAP"] + 0.2
    assert f"Dataset: `{other}`" in capsys.readouterr().out
    # Without --data, from another current folder: the run's own dataset, as it recorded it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        assert main(["evaluate", run_dir, "--split", "dev", "--out", str(tmp_path / "dev-eval")]) == 0
    finally:
        os.chdir(cwd)
    assert f"Dataset: `{os.path.abspath(data)}`" in capsys.readouterr().out
    # The MM-IMDb layout works too; genres the model never learned are reported.
    assert main(["evaluate", run_dir, "--data", mmimdb_dir, "--split", "train"]) == 0
    assert "never learned (ignored): {'Film-Noir': 1}" in capsys.readouterr().out

    poster = sorted(os.path.join(other, "posters", p) for p in os.listdir(os.path.join(other, "posters")))[0]
    assert main(["predict", run_dir, "--poster", poster, "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)["genres"]
    assert len(ranked) == len(scores["genres"])
    assert ranked[0]["probability"] >= ranked[-1]["probability"]

    # The image model refuses text it would ignore, with a clear message.
    assert main(["predict", run_dir, "--poster", poster, "--overview", "a story"]) == 2
    assert "does not take a overview" in capsys.readouterr().err
    assert main(["predict", run_dir, "--poster", str(config)]) == 2
    assert "not_an_image" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_predict_shows_the_most_attended_words(shared_runs, capsys):
    run_dir = shared_runs["bilstm_attention"]  # trained 8 epochs (conftest)
    capsys.readouterr()
    text = "the haunted house had a demon and the old town"
    assert main(["predict", run_dir, "--overview", text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    words = [a["word"] for a in out["attention"]]
    assert words and set(words) <= set(text.split())
    # A Horror overview: the planted keywords should be what the model looks at.
    assert {"haunted", "demon"} & set(words[:3]), out["attention"]
    assert out["genres"][0]["genre"] == "Horror", out["genres"][:3]


@pytest.mark.slow
def test_cli_answers_without_tensorflow_start_up_noise():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mmgenre.cli", "models"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0 and "text_encoder" in done.stdout
    for noise in ("cuda", "oneDNN", "absl::InitializeLog"):
        assert noise not in done.stderr, done.stderr


def test_a_full_disk_is_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    import errno

    from mmgenre.data import synth

    target = str(tmp_path / "data" / "movies.csv")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)

    monkeypatch.setattr(synth, "make_synthetic", full)
    assert main(["synth", "--out", str(tmp_path / "data"), "--n", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and target in err and "free space" in err
    monkeypatch.setenv("MMGENRE_TRACEBACK", "1")  # developers can still see where
    with pytest.raises(OSError):
        main(["synth", "--out", str(tmp_path / "data"), "--n", "4"])


def test_preparing_an_encoder_without_pip_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A Python without pip (a bare venv): `encoders prepare` says so and what to do; nothing
    half-prepared stays in MMGENRE_HOME."""
    from mmgenre.encoders import sources

    bare = tmp_path / "python"
    bare.write_text("#!/bin/sh\necho '/usr/bin/python: No module named pip' >&2\nexit 1\n")
    bare.chmod(0o755)
    monkeypatch.setenv("MMGENRE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources.sys, "executable", str(bare))
    assert main(["encoders", "prepare", "minilm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no pip" in err and "--wheel FILE" in err
    left = [p for p in (tmp_path / "home" / "encoders").rglob("*") if p.is_file()]
    assert left == []  # the lock released, no staging folder
