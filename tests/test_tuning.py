import json
import os
import socket

import keras_tuner as kt
import pytest
import yaml

from mmgenre.config import ConfigError, load_config
from mmgenre.models import registry
from mmgenre.tuning import search as search_lib
from mmgenre.tuning.hypermodels import GenreHyperModel, check_space

pytestmark = pytest.mark.slow  # trains or embeds: left out of the quick tier

LSTM = {"name": "lstm", "params": {"units": 16, "embedding_dim": 16}}


def _search_file(tmp_path, data, space, name="s", epochs=2, model=LSTM, **extra):
    experiment = tmp_path / f"{name}_exp.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "exp", "data": {"path": data, "image_size": [32, 32], "min_genre_count": 3,
                                "batch_size": 16, "sequence_length": 24, "max_tokens": 200},
        "model": model,
        "train": {"epochs": epochs, "patience": 2}}))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"experiment": str(experiment), "tuner": "random",
                                    "max_trials": 2, "space": space,
                                    "directory": str(tmp_path / f"search_{name}"), **extra}))
    return str(path)


def test_space_errors_name_the_key():
    cfg = load_config(raw={"model": {"name": "cnn"}})
    with pytest.raises(ConfigError, match="model 'cnn' has no hyperparameter 'units'"):
        check_space({"model.params.units": {"type": "int", "min": 1, "max": 4}}, cfg)
    with pytest.raises(ConfigError, match="empty range min=0.5 >= max=0.1"):
        check_space({"model.params.dropout": {"type": "float", "min": 0.5, "max": 0.1}}, cfg)
    with pytest.raises(ConfigError, match="'data.path' cannot be searched"):
        check_space({"data.path": {"type": "choice", "values": ["a"]}}, cfg)
    with pytest.raises(ConfigError, match="search space is empty"):
        check_space({}, cfg)
    with pytest.raises(ConfigError, match="must not contain 'chief'"):
        search_lib.role_environment("worker", "127.0.0.1", 1, "chief-2")


def test_default_hyperparameters_rebuild_the_untuned_model(synthetic_dir, tmp_path):
    from mmgenre.data import prepare
    from mmgenre.training import fit

    space = {"model.params.units": {"type": "choice", "values": [8, 16, 32]},
             "train.learning_rate": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}}
    search = search_lib.load_search_config(_search_file(tmp_path, synthetic_dir, space))
    cfg = search_lib.experiment_config(search)
    prepared = prepare.prepare_data(cfg.data, registry.get("lstm"))
    hypermodel = GenreHyperModel(cfg.to_dict(), space, prepared, "val_micro_f1")
    hp = kt.HyperParameters()
    tuned = hypermodel.build(hp)
    assert hp.values == {"model.params.units": 16, "train.learning_rate": cfg.train.learning_rate}
    untuned = fit.build_for_data(cfg, prepared)
    assert tuned.count_params() == untuned.count_params()


def test_trials_over_a_frozen_backbone_share_one_feature_cache(synthetic_dir, tmp_path):
    """A search over a frozen-branch fusion's head: the branches run once, every trial fits
    only the head on their cached features (concat and GMU alike)."""
    from mmgenre.data import prepare

    fusion = {"name": "fusion", "params": {
        "image_branch": "cnn", "text_branch": "bag_of_words", "freeze_branches": True,
        "image_params": {"filters": [4]}, "image_weights": str(tmp_path / "cnn.keras"),
        "text_weights": str(tmp_path / "bag_of_words.keras")}}
    space = {"model.params.method": {"type": "choice", "values": ["concat", "gmu"]},
             "model.params.fusion_units": {"type": "choice", "values": [8, 16]}}
    path = _search_file(tmp_path, synthetic_dir, space, epochs=1, model=fusion)
    experiment = tmp_path / "s_exp.yaml"
    raw = yaml.safe_load(experiment.read_text())
    raw["train"].update(cache_features=True, feature_cache_dir=str(tmp_path / "cache"))
    experiment.write_text(yaml.safe_dump(raw))
    # Fixed branch weights, as pretrained encoders have (fresh random ones differ per trial).
    search = search_lib.load_search_config(path)
    cfg = search_lib.experiment_config(search)
    vocab = prepare.prepare_data(cfg.data, registry.get("fusion")).vectorizer.vocabulary_size()
    data = dict(num_genres=3, image_size=(32, 32), vocab_size=vocab, sequence_length=24)
    for name, params in (("cnn", {"filters": [4]}), ("bag_of_words", {})):
        registry.build_model(name, params, **data).save(tmp_path / f"{name}.keras")
    table, best = search_lib.run_search(search, verbose=0)
    assert (table["status"] == "COMPLETED").sum() == 2 and best is not None
    assert len([f for f in os.listdir(tmp_path / "cache") if f.endswith(".npy")]) == 2  # train, dev


def test_search_resumes_and_records_failed_trials(synthetic_dir, tmp_path):
    # dropout 1.5 is rejected by the builder: that trial fails, the search goes on.
    space = {"model.params.dropout": {"type": "choice", "values": [0.2, 1.5]},
             "model.params.units": {"type": "choice", "values": [8, 16]}}
    # bag_of_words: resuming is the same for every model, and LSTM trials took twice as long.
    path = _search_file(tmp_path, synthetic_dir, space, epochs=1,
                        model={"name": "bag_of_words", "params": {"units": 16}})
    try:
        search_lib.run_search(search_lib.load_search_config(path, max_trials=2), verbose=0)
    except search_lib.SearchFailed:  # both random picks may be the failing dropout: no best yet
        pass
    fits_log = tmp_path / "search_s" / "fits.jsonl"
    fits_before = fits_log.read_text().count("\n") if fits_log.exists() else 0
    table, best = search_lib.run_search(search_lib.load_search_config(path, max_trials=4), verbose=0)
    assert len(table) == 4
    assert set(table["status"]) <= {"COMPLETED", "FAILED"}
    assert (table.loc[table["status"] == "FAILED", "model.params.dropout"] == 1.5).all()
    completed = (table["status"] == "COMPLETED").sum()
    # Resumed: the finished trials of the first run were not fitted again.
    assert fits_log.read_text().count("\n") == completed == 2
    assert fits_before <= 2
    assert best is not None and best.model.params["dropout"] == 0.2
    out = tmp_path / "search_s"
    for name in ("trials.csv", "trials.md", "objective.png", "best_config.yaml"):
        assert (out / name).exists(), name
    assert load_config(str(out / "best_config.yaml")).model.params["dropout"] == 0.2


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_port_in_use_and_unreachable_chief_are_clear_errors():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"oracle port 127.0.0.1:{port} is already in use"):
            search_lib.check_port_free("127.0.0.1", port)
    with pytest.raises(ConfigError, match="chief not reachable"):
        search_lib.wait_for_chief("127.0.0.1", _free_port(), timeout=1)


@pytest.mark.benchmark  # several TensorFlow processes: ~30-60 s on 2 cores; run with -m benchmark
def test_distributed_search_with_a_worker_killed_mid_trial(synthetic_dir, tmp_path):
    """Chief + two workers on loopback; tuner1 is killed mid-trial and restarted with
    its id: it resumes its trial, the chief finishes, every trial runs exactly once and
    both workers contribute."""
    import subprocess
    import sys
    import time

    # Four trials for two workers: even if tuner0 starts first, tuner1 gets work.
    space = {"model.params.units": {"type": "choice", "values": [4, 8, 12, 16]}}
    # bag_of_words trials: this test is about scheduling, and four TensorFlow processes share 2 cores.
    path = _search_file(tmp_path, synthetic_dir, space, name="dist", epochs=1, max_trials=4,
                        model={"name": "bag_of_words", "params": {"units": 16}})
    port = _free_port()
    base = [sys.executable, "-m", "mmgenre.cli", "tune", "--config", path, "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chief = subprocess.Popen([*base, "--role", "chief"], **quiet)
    workers = {wid: subprocess.Popen([*base, "--role", "worker", "--worker-id", wid], **quiet)
               for wid in ("tuner0", "tuner1")}
    trials_dir = tmp_path / "search_dist" / "trials"
    deadline = time.time() + 120
    while len(list(trials_dir.glob("trial_*/trial.json"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers["tuner1"].kill()  # both workers hold a trial now: tuner1's is interrupted
    workers["tuner1"].wait()
    restarted = subprocess.run([*base, "--role", "worker", "--worker-id", "tuner1"], env=env,
                               capture_output=True, text=True, timeout=240)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert workers["tuner0"].wait(timeout=240) == 0
    assert chief.wait(timeout=120) == 0  # no hang
    fits = [json.loads(line) for line in (tmp_path / "search_dist" / "fits.jsonl").read_text().splitlines()]
    assert sorted(f["values"]["model.params.units"] for f in fits) == [4, 8, 12, 16]  # each once
    assert {f["worker"] for f in fits} == {"tuner0", "tuner1"}  # both contributed
    assert all(f["epochs"] >= 1 for f in fits)
    assert (tmp_path / "search_dist" / "trials.csv").read_text().count("COMPLETED") == 4


def test_search_state_follows_out_and_zero_trials_is_an_error(synthetic_dir, tmp_path, capsys):
    from mmgenre.cli import main

    path = _search_file(tmp_path, synthetic_dir,
                        {"train.learning_rate": {"type": "choice", "values": [0.003]}},
                        epochs=1, model={"name": "bag_of_words", "params": {"units": 8}})
    assert main(["tune", "--config", path, "--max-trials", "0"]) == 2
    assert "max_trials must be >= 1, got 0" in capsys.readouterr().err
    out = tmp_path / "elsewhere"
    assert main(["tune", "--config", path, "--max-trials", "1", "--out", str(out)]) == 0
    assert (out / "trials").is_dir() and (out / "trials.csv").exists()
    assert not (tmp_path / "search_s").exists()  # the config's own directory stays untouched


def test_a_search_in_which_every_trial_failed_exits_non_zero_without_a_best_config(
        synthetic_dir, tmp_path, capsys, monkeypatch):
    from mmgenre.cli import main

    def out_of_memory(self, hp, model, *args, **kwargs):
        raise RuntimeError("OOM when allocating tensor")

    monkeypatch.setattr(GenreHyperModel, "fit", out_of_memory)
    space = {"model.params.dropout": {"type": "choice", "values": [0.1, 0.2]}}
    path = _search_file(tmp_path, synthetic_dir, space, name="f", epochs=1, max_trials=1)
    out = tmp_path / "search_f"
    out.mkdir()
    (out / "best_config.yaml").write_text("# from an earlier, successful run of this search\n")
    assert main(["tune", "--config", path, "--retrain-best"]) == 2
    err = capsys.readouterr().err
    assert "all 1 trial(s) failed" in err and "OOM when allocating tensor" in err
    assert not (out / "best_config.yaml").exists() and (out / "trials.csv").exists()
