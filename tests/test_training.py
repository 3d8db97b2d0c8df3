import json
import os

import keras
import pandas as pd
import pytest
from conftest import SHARED_RUNS_GROUP, tiny_config

from mmgenre.training.trainer import train_and_evaluate

pytestmark = pytest.mark.slow  # trains or embeds: left out of the quick tier


@pytest.mark.parametrize("model", ["cnn", "lstm"])
@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_model_learns_the_planted_signal(model, shared_runs):
    run_dir = shared_runs[model]  # 5 or 8 epochs (conftest)
    results = json.load(open(os.path.join(run_dir, "metrics.json")))
    test = results["splits"]["test"]
    # Far above the constant train-frequency prior on the threshold-free metric
    # and on macro-F1 (the prior's macro-F1 is low: it predicts 1-2 genres).
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.25, test
    assert test["tuned"]["macro_f1"] > test["prior"]["macro_f1"] + 0.25, test
    for name in ("best.keras", "history.csv", "thresholds.json", "report.md", "errors.md",
                 "training_curves.png", "per_genre_f1.png", "genres.json", "validation.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name


def test_single_label_task_beats_majority_class(synthetic_dir, tmp_path, capsys):
    cfg = tiny_config(synthetic_dir, "cnn", data={"task": "single"})
    results = train_and_evaluate(cfg, str(tmp_path / "single"), verbose=0)
    assert "Epoch 1/" not in capsys.readouterr().out  # verbose=0: no Keras progress lines
    single = results["splits"]["test"]["single"]
    prior = results["splits"]["test"]["prior"]  # the majority class, as a baseline row
    assert single["accuracy"] > 0.6 > prior["accuracy"] + 0.2, (single, prior)
    assert len(single["confusion_matrix"]) == len(results["genres"])
    # Reports as complete as multi-label ones: labelled confusion matrix, per-genre, errors.
    report = open(tmp_path / "single" / "report.md").read()
    assert "prior (train frequency)" in report and "## Confusion matrix" in report
    assert results["genres"][0] in report.split("## Confusion matrix")[1]
    for name in ("confusion_matrix.png", "per_genre.csv", "errors.md"):
        assert (tmp_path / "single" / name).exists(), name


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated kill")


class _FirstEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.first = getattr(self, "first", epoch)


def test_interrupted_run_resumes_where_it_stopped(synthetic_dir, tmp_path):
    # bag_of_words: resuming is the same for every model, and the LSTM took twice as long here.
    cfg = tiny_config(synthetic_dir, "bag_of_words", train={"epochs": 4, "patience": 10})
    run_dir = str(tmp_path / "resume")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_and_evaluate(cfg, run_dir, callbacks=[_Crash()], verbose=0)
    assert not os.path.exists(os.path.join(run_dir, "metrics.json"))
    probe = _FirstEpoch()
    train_and_evaluate(cfg, run_dir, callbacks=[probe], verbose=0)
    assert probe.first == 2  # epochs 0 and 1 were finished and backed up
    assert pd.read_csv(os.path.join(run_dir, "history.csv"))["epoch"].tolist() == [0, 1, 2, 3]
    # A finished run is not retrained; a different config in the same folder is refused.
    again = train_and_evaluate(cfg, run_dir, verbose=0)
    assert again == json.load(open(os.path.join(run_dir, "metrics.json")))
    other = tiny_config(synthetic_dir, "bag_of_words", train={"epochs": 5})
    with pytest.raises(ValueError, match="different config"):
        train_and_evaluate(other, run_dir, verbose=0)
    # Another threshold rule re-scores the saved model: same probabilities, no training.
    rescored = train_and_evaluate(
        tiny_config(synthetic_dir, "bag_of_words", train={"epochs": 4, "patience": 10},
                    evaluation={"thresholds": "per_genre"}), run_dir)
    assert (again["threshold_rule"], rescored["threshold_rule"]) == ("prevalence", "per_genre")
    assert rescored["splits"]["test"]["at_0.5"] == again["splits"]["test"]["at_0.5"]
    assert rescored["splits"]["test"]["tuned"] == again["splits"]["test"]["by_rule"]["per_genre"]
    assert len(pd.read_csv(os.path.join(run_dir, "history.csv"))) == 4


def test_run_killed_while_saving_its_backup_restarts_with_a_warning(synthetic_dir, tmp_path, capsys):
    cfg = tiny_config(synthetic_dir, "bag_of_words", data={"limit": 64}, train={"epochs": 2, "patience": 10})
    run_dir = str(tmp_path / "killed")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_and_evaluate(cfg, run_dir, callbacks=[_Crash()], verbose=0)
    backup = os.path.join(run_dir, "backup", "latest.weights.h5")
    with open(backup, "r+b") as f:
        f.truncate(96)  # what a kill in the middle of the write leaves
    probe = _FirstEpoch()
    results = train_and_evaluate(cfg, run_dir, callbacks=[probe], verbose=0)
    assert "latest.weights.h5 is unreadable" in capsys.readouterr().err
    assert probe.first == 0 and "test" in results["splits"]
    assert pd.read_csv(os.path.join(run_dir, "history.csv"))["epoch"].tolist() == [0, 1]


@pytest.fixture(scope="module")
def split_signal_dir(tmp_path_factory):
    from mmgenre.data.synth import make_synthetic

    return make_synthetic(str(tmp_path_factory.mktemp("split")), n=300, seed=2, signal="split",
                          image_size=(32, 32))


def test_cached_features_are_keyed_by_the_backbone_not_the_head():
    """Models sharing a backbone (a search over head hyperparameters) share its cached features;
    a backbone with any other weight (a retrained source run) never reads them."""
    from mmgenre.models import registry
    from mmgenre.models.heads import backbone_and_head
    from mmgenre.training.feature_cache import backbone_identity

    data = dict(num_genres=3, image_size=(16, 16))
    one, other = (registry.build_model("cnn", {"filters": [4], "dense_units": units,
                                               "dropout": rate}, **data)
                  for units, rate in ((8, 0.5), (16, 0.1)))
    one, other = backbone_and_head(one)[0], backbone_and_head(other)[0]
    assert backbone_identity(one) != backbone_identity(other)  # other random weights
    other.set_weights(one.get_weights())
    assert backbone_identity(one) == backbone_identity(other)  # other head, same backbone
    retrained = [w + 1e-6 for w in one.get_weights()]
    other.set_weights(retrained)
    assert backbone_identity(one) != backbone_identity(other)


@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_fusion_over_frozen_trained_branches_trains_only_its_head(synthetic_dir, shared_runs, tmp_path):
    """The trained unimodal runs as fixed branches: their backbones run once (cached features),
    only the GMU and the head train, and the fused run is scored with each input absent."""
    import numpy as np

    from mmgenre.models.saving import load_model
    from mmgenre.models.weights import named_layers

    cfg = tiny_config(synthetic_dir, "fusion", {
        "method": "gmu", "fusion_units": 16, "text_branch": "bag_of_words", "freeze_branches": True,
        "image_weights": shared_runs["cnn"], "text_weights": shared_runs["bag_of_words"]},
        train={"epochs": 4, "cache_features": True, "feature_cache_dir": str(tmp_path / "cache")})
    fused = train_and_evaluate(cfg, str(tmp_path / "frozen"), verbose=0)
    assert len([f for f in os.listdir(tmp_path / "cache") if f.endswith(".npy")]) == 2  # train, dev
    # Every poster-branch weight as the cnn run trained it (the bag-of-words branch, word
    # counts, has no weights of its own).
    branch = load_model(str(tmp_path / "frozen" / "best.keras")).get_layer("image_branch")
    trained = named_layers(load_model(os.path.join(shared_runs["cnn"], "best.keras")))
    kept = [layer for layer in branch.layers if layer.weights]
    assert kept
    for layer in kept:
        for got, want in zip(layer.get_weights(), trained[layer.name].get_weights()):
            np.testing.assert_array_equal(got, want)
    test = fused["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.2, test
    for absent in ("poster missing", "overview missing"):
        assert fused["missing_modality"][absent]["at_0.5"]["mAP"] > test["prior"]["mAP"], absent
    gate = fused["gmu_mean_gate"]
    assert 0 < gate["poster"] < 1 and gate["poster"] + gate["overview"] == pytest.approx(1)


# A claim about learning, not a behaviour: four trainings of ten epochs (about 30 s on 2 cores).
# The frozen-branch mechanics are the test above.
@pytest.mark.benchmark
def test_fusion_beats_each_branch_when_the_signal_is_split(split_signal_dir, tmp_path):
    """Half the genres show only on posters, half only in text: only fusion sees all."""
    maps = {}
    # bag_of_words, not lstm, as the text branch: same test, a third of the time on 2 cores.
    for name, model, params in [("cnn", "cnn", {}), ("text", "bag_of_words", {}),
                                ("fusion", "fusion", {"method": "gmu", "fusion_units": 32,
                                                      "text_branch": "bag_of_words",
                                                      "modality_dropout": 0.1})]:
        cfg = tiny_config(split_signal_dir, model, params, train={"epochs": 10})
        results = train_and_evaluate(cfg, str(tmp_path / name), verbose=0)
        maps[name] = results["splits"]["test"]["at_0.5"]["mAP"]
        if name == "fusion":
            fused = results
    assert maps["fusion"] > max(maps["cnn"], maps["text"]) + 0.1, maps
    # Evaluated three ways; losing a modality costs accuracy but still beats the prior.
    missing = fused["missing_modality"]
    prior = fused["splits"]["test"]["prior"]["mAP"]
    for absent in ("poster missing", "overview missing"):
        assert prior < missing[absent]["at_0.5"]["mAP"] < maps["fusion"], (absent, missing, prior)
    gate = fused["gmu_mean_gate"]
    assert 0 < gate["poster"] < 1 and gate["poster"] + gate["overview"] == pytest.approx(1)
    # The trained branches, frozen: their backbones run once, only the fusion's head trains.
    frozen = tiny_config(split_signal_dir, "fusion", {
        "method": "gmu", "fusion_units": 32, "text_branch": "bag_of_words", "freeze_branches": True,
        "image_weights": str(tmp_path / "cnn"), "text_weights": str(tmp_path / "text")},
        train={"epochs": 5, "cache_features": True, "feature_cache_dir": str(tmp_path / "cache")})
    cached = train_and_evaluate(frozen, str(tmp_path / "frozen"), verbose=0)
    assert len([f for f in os.listdir(tmp_path / "cache") if f.endswith(".npy")]) == 2  # train, dev
    assert cached["splits"]["test"]["at_0.5"]["mAP"] > max(maps["cnn"], maps["text"]) + 0.05, (
        cached["splits"]["test"], maps)


_WORKER = """
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": sys.argv[1].split(",")},
                                      "task": {"type": "worker", "index": int(sys.argv[2])}})
sys.path.insert(0, sys.argv[5])
from conftest import tiny_config
from mmgenre.training.trainer import train_and_evaluate
cfg = tiny_config(sys.argv[3], "lstm", train={"epochs": 2, "strategy": "multiworker"})
train_and_evaluate(cfg, sys.argv[4], verbose=0)
"""


@pytest.mark.benchmark  # several TensorFlow processes: ~30-60 s on 2 cores; run with -m benchmark
def test_two_workers_on_loopback_train_identically(synthetic_dir, tmp_path):
    import socket
    import subprocess
    import sys

    import numpy as np

    from mmgenre.models.saving import load_model

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cluster = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tests_dir = os.path.dirname(__file__)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, cluster, str(i), synthetic_dir,
                               str(tmp_path / f"worker{i}"), tests_dir], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outputs]
    models = [load_model(str(tmp_path / f"worker{i}" / "best.keras")) for i in range(2)]
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    history = pd.read_csv(tmp_path / "worker0" / "history.csv")
    assert history["epoch"].tolist() == [0, 1] and np.isfinite(history["loss"]).all()
    # Same result shape as one process: the same metrics for the same genres.
    one = train_and_evaluate(tiny_config(synthetic_dir, "lstm", train={"epochs": 2}),
                             str(tmp_path / "single"), verbose=0)
    multi = json.load(open(tmp_path / "worker0" / "metrics.json"))
    assert multi["genres"] == one["genres"]
    assert multi["splits"]["test"].keys() == one["splits"]["test"].keys()


@pytest.mark.parametrize("loss", ["focal", "balanced"])
def test_bag_of_words_with_imbalance_losses_learns_the_text_signal(loss, synthetic_dir, tmp_path):
    cfg = tiny_config(synthetic_dir, "bag_of_words", train={"loss": loss, "label_smoothing": 0.05})
    results = train_and_evaluate(cfg, str(tmp_path / "bow"), verbose=0)
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.3, test
    # The saved model (with its registered loss) reloads and predicts the saved probabilities.
    from mmgenre.models.saving import load_model

    model = load_model(str(tmp_path / "bow" / "best.keras"))
    assert model.loss.name == {"focal": "focal", "balanced": "balanced_bce"}[loss]


@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_pretrained_frozen_branch_trains_only_its_new_head(synthetic_dir, shared_runs, tmp_path):
    """The posters-movielens recipe in miniature: pretrain (the shared cnn run), copy
    layers, freeze, cache, train the head."""
    import numpy as np

    from mmgenre.models.saving import load_model
    from mmgenre.models.weights import named_layers

    source = shared_runs["cnn"]
    cfg = tiny_config(synthetic_dir, "cnn", data={"train_limit": 60},
                      train={"init_from": source, "init_frozen": True,
                             "cache_features": True, "epochs": 6,
                             "feature_cache_dir": str(tmp_path / "cache")})
    results = train_and_evaluate(cfg, str(tmp_path / "transfer"), verbose=0)
    before, after = (load_model(os.path.join(d, "best.keras")) for d in (source, str(tmp_path / "transfer")))
    after, before = named_layers(after), named_layers(before)
    for name in ("conv1", "conv2", "embedding"):
        for got, want in zip(after[name].get_weights(), before[name].get_weights()):
            np.testing.assert_array_equal(got, want)
    assert not np.allclose(after["genres"].get_weights()[0], before["genres"].get_weights()[0])
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.25, test
    rows = json.load(open(tmp_path / "transfer" / "validation.json"))["rows_per_split"]
    assert rows["train"] == 60 and rows["dev"] > 0
    # A source still training (no completion record) is not a result to start from.
    import shutil

    shutil.copytree(source, tmp_path / "unfinished")
    os.remove(tmp_path / "unfinished" / "complete.json")
    cfg.train.init_from = str(tmp_path / "unfinished")
    with pytest.raises(ValueError, match="not a finished run.*finish it first"):
        train_and_evaluate(cfg, str(tmp_path / "transfer2"), verbose=0)


def test_train_limit_subsets_are_nested_and_keep_file_order():
    from mmgenre.data.prepare import subsample

    rows = pd.DataFrame({"id": [f"tt{i:07d}" for i in range(100)]})
    small, large = subsample(rows, 30), subsample(rows, 70)
    assert len(small) == 30 and set(small["id"]) <= set(large["id"])
    assert list(small["id"]) == sorted(small["id"])  # file order, not shuffled order
    assert len(subsample(rows, 500)) == 100
