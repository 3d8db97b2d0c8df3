"""The run folder survives kills, refuses a second writer and other data, and loads safely.

Faults are injected deterministically: an exception raised at a chosen write
(KeyboardInterrupt, what Ctrl-C raises) stands for a kill at that point.
"""

import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_RUNS_GROUP, shared_run_config, tiny_config

from mmgenre import files, runs
from mmgenre.training.trainer import train_and_evaluate

# Tests that train a model are slow (left out of the quick tier); the run-folder rules
# themselves (atomic writes, locks, caches, outputs) are tested without one.

FAST = {"epochs": 1, "patience": 10}


def _cfg(data, **train):
    return tiny_config(data, "bag_of_words", {"units": 16}, train={**FAST, **train})


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "metrics.json")
    files.write_json(path, {"old": 1})
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"new": ')  # half written
            raise KeyboardInterrupt
    assert json.load(open(path)) == {"old": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_saved_model_writes_its_weights_through_disk_and_reloads_identically(tmp_path, monkeypatch):
    """Keras would hold a copy of the weights in memory while saving whenever they fit in half
    the free memory (an MPNet graph: 438 MB more at the peak); mmgenre saves through a file."""
    from keras.src.saving import saving_lib

    asked = []
    monkeypatch.setattr(saving_lib, "is_memory_sufficient", lambda model: asked.append(model) or True)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="dense")])
    path = str(tmp_path / "best.keras")
    files.save_model(model, path)
    assert asked == [] and os.listdir(tmp_path) == ["best.keras"]  # no copy in memory, no leftovers
    again = keras.models.load_model(path)
    assert len(asked) == 1  # loading keeps Keras' own choice
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_kill_while_writing_the_report_is_finished_by_a_rerun(synthetic_dir, tmp_path, monkeypatch):
    from mmgenre.evaluation import saved_scores

    run_dir = str(tmp_path / "run")
    real = files.write_text

    def killed_at_report(path, text):
        if path.endswith("report.md"):
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(files, "write_text", killed_at_report)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_cfg(synthetic_dir), run_dir, verbose=0)
    monkeypatch.undo()
    assert os.path.exists(os.path.join(run_dir, "metrics.json")) and not runs.is_complete(run_dir)
    # Nothing reads a half-finished folder as a result...
    with pytest.raises(ValueError, match="not a finished run"):
        saved_scores.saved_probabilities(run_dir)
    # ...and the same command finishes it without training again.
    history = pd.read_csv(os.path.join(run_dir, "history.csv"))
    results = train_and_evaluate(_cfg(synthetic_dir), run_dir, verbose=0)
    assert runs.is_complete(run_dir) and os.path.exists(os.path.join(run_dir, "report.md"))
    assert pd.read_csv(os.path.join(run_dir, "history.csv")).equals(history)
    assert results == json.load(open(os.path.join(run_dir, "metrics.json")))
    # A file of the record cut short later makes the folder unfinished again.
    with open(os.path.join(run_dir, "report.md"), "r+") as f:
        f.truncate(5)
    assert not runs.is_complete(run_dir)


class _KillInFirstEpoch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_kill_in_the_first_epoch_and_an_empty_history_file_resume(synthetic_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_cfg(synthetic_dir, epochs=2), run_dir, callbacks=[_KillInFirstEpoch()], verbose=0)
    open(os.path.join(run_dir, "history.csv"), "w").close()  # what Keras' CSVLogger used to leave
    train_and_evaluate(_cfg(synthetic_dir, epochs=2), run_dir, verbose=0)
    assert pd.read_csv(os.path.join(run_dir, "history.csv"))["epoch"].tolist() == [0, 1]
    assert runs.is_complete(run_dir)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(synthetic_dir, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    with runs.locked(run_dir):
        with pytest.raises(runs.RunFolderError, match=f"in use by process {os.getpid()}"):
            train_and_evaluate(_cfg(synthetic_dir), run_dir, verbose=0)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(run_dir, runs.LOCK), "w") as f:
        json.dump({"pid": dead.pid, "host": __import__("socket").gethostname()}, f)
    with runs.locked(run_dir):  # the lock rule alone, no model trained
        assert json.load(open(os.path.join(run_dir, runs.LOCK)))["pid"] == os.getpid()
    assert f"stale lock of process {dead.pid}" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(run_dir, runs.LOCK))


@pytest.mark.slow
def test_resume_after_the_dataset_changed_is_refused(synthetic_dir, tmp_path):
    data = shutil.copytree(synthetic_dir, tmp_path / "data")
    run_dir = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_cfg(data), run_dir, callbacks=[_KillAfterFirstEpoch()], verbose=0)
    movies = pd.read_csv(data / "movies.csv")
    movies.iloc[:-5].to_csv(data / "movies.csv", index=False)
    with pytest.raises(runs.RunFolderError, match="dataset changed since this run started"):
        train_and_evaluate(_cfg(data), run_dir, verbose=0)


@pytest.mark.slow
def test_a_failed_start_does_not_block_the_corrected_command(synthetic_dir, tmp_path):
    from mmgenre.data.records import DataError

    run_dir = str(tmp_path / "run")
    with pytest.raises(DataError, match="dataset not found"):
        train_and_evaluate(_cfg(tmp_path / "typo"), run_dir, verbose=0)
    results = train_and_evaluate(_cfg(synthetic_dir), run_dir, verbose=0)
    assert "test" in results["splits"] and runs.is_complete(run_dir)


@pytest.mark.slow
@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_resuming_never_runs_code_from_the_run_folder(synthetic_dir, shared_runs, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(shared_runs["bag_of_words"], run_dir)
    # Someone hands over the folder with a Lambda layer in best.keras, unfinished.
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(
        os.path.join(run_dir, "best.keras"))
    os.remove(os.path.join(run_dir, runs.COMPLETE))
    with pytest.raises(ValueError, match="layer type.s. Lambda whose loading runs code"):
        train_and_evaluate(shared_run_config(synthetic_dir, "bag_of_words"), run_dir, verbose=0)


def test_a_diverging_loss_stops_naming_the_epoch_before_anything_is_saved():
    from mmgenre.training.fit import DivergenceGuard, TrainingDiverged

    guard = DivergenceGuard()
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(TrainingDiverged, match="loss is nan in epoch 3 .batch 4."):
        guard.on_train_batch_end(3, {"loss": np.float32("nan")})


def test_a_fit_traces_its_train_step_once():
    """compile_built makes the optimizer's and the task metrics' variables before fit: made in
    the first traced train step, they made TensorFlow trace that step a second time."""
    import tensorflow as tf

    from mmgenre import tasks
    from mmgenre.training.fit import compile_built

    traced = []

    class Counting(keras.Model):
        def train_step(self, data):
            traced.append(1)
            return super().train_step(data)

    inputs = keras.Input((4,))
    model = Counting(inputs, keras.layers.Dense(3, activation="sigmoid")(inputs))
    metrics = tasks.get("multilabel").metrics(3)
    assert not metrics[1].variables  # F1Score makes its variables on its first update
    compile_built(model, keras.optimizers.Adam(0.01), "binary_crossentropy", metrics)
    # Built ahead, and back at zero: fit's micro-F1 counts only what fit gives it.
    assert metrics[1].variables and all(np.all(v.numpy() == 0) for m in metrics for v in m.variables)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), "float32"), (rng.random((32, 3)) > 0.5).astype("float32")
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, shuffle=False, verbose=0)
    assert len(traced) == 1


def test_a_run_finds_its_dataset_from_any_current_folder(tmp_path, monkeypatch):
    """A config's relative data.path breaks from another folder; the recorded absolute path
    does not; neither there is a one-line error naming both and the fix."""
    from mmgenre import runs

    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    run_dir = str(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "work")
    runs.record_dataset(run_dir, "data", "abc")
    assert runs.dataset_path(run_dir, "data") == "data"
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert runs.dataset_path(run_dir, "data") == str(tmp_path / "work" / "data")
    (tmp_path / "work" / "data").rmdir()
    with pytest.raises(runs.RunFolderError, match=r"dataset is not found \('data' nor .*--data DIR"):
        runs.dataset_path(run_dir, "data")


def test_cached_arrays_are_verified_before_they_are_trusted(tmp_path, capsys):
    """Each cache file carries its SHA-256: a file cut short or changed in place is recomputed,
    never read, and so is a file without one (a kill between the array and its checksum)."""
    import numpy as np


    path = str(tmp_path / "emb.npy")
    calls = []

    def compute():
        calls.append(1)
        return np.arange(12, dtype="float32").reshape(4, 3)

    first = files.cached_array(path, compute, rows=4)
    np.testing.assert_array_equal(files.cached_array(path, compute, rows=4), first)
    assert len(calls) == 1
    data = open(path, "rb").read()
    for damage, message in ((lambda: open(path, "wb").write(data[:-5]), "SHA-256"),
                            (lambda: open(path, "wb").write(data[:-4] + b"\0\0\0\1"), "SHA-256")):
        damage()
        np.testing.assert_array_equal(files.cached_array(path, compute, rows=4), first)
        assert message in capsys.readouterr().err
    assert len(calls) == 3
    os.remove(path + ".sha256")
    np.testing.assert_array_equal(files.cached_array(path, compute, rows=4), first)
    assert len(calls) == 4 and "has no recorded SHA-256" in capsys.readouterr().err
    assert files.file_sha256(path) == open(path + ".sha256").read()


def test_a_second_preparation_waits_for_the_first(tmp_path, capsys):
    """Two processes preparing one encoder: the second waits on the lock (then finds the
    folder prepared) instead of writing into it at the same time. A real second process
    holds the lock here."""
    import subprocess
    import sys
    import time

    from mmgenre import runs

    folder = str(tmp_path / "locks" / "minilm")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mmgenre import runs\n"
        f"with runs.locked({folder!r}):\n    print('held', flush=True)\n    time.sleep(0.8)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.time()
    with runs.waiting_lock(folder, poll=0.1):
        waited = time.time() - started
    holder.wait()
    assert waited > 0.3
    err = capsys.readouterr().err
    assert "waiting:" in err and "in use by process" in err
    assert not os.path.exists(os.path.join(folder, runs.LOCK))  # released


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """A batch prediction killed mid-CSV leaves .tmp<pid>-predictions.csv beside the user's CSV
    (which keeps its old content); the next write of that file removes the leftover."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "predictions.csv"
    out.write_text("id,Drama\n1,0.5\n")
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mmgenre import files\n"
        f"with files.atomic_path({str(out)!r}) as tmp:\n"
        "    f = open(tmp, 'w'); f.write('id,Drama\\n2,0.'); f.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert len(leftovers) == 1 and out.read_text() == "id,Drama\n1,0.5\n"  # the old CSV is whole
    os.utime(leftovers[0], (0, 0))  # untouched for longer than a live writer would be
    files.write_text(str(out), "id,Drama\n3,0.7\n")
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
    assert out.read_text() == "id,Drama\n3,0.7\n"


def test_report_and_prediction_outputs_never_replace_a_users_files(tmp_path):
    """evaluate / score-fusion / tune --out into a folder of the user's, and predict --out onto a
    user's CSV, are refused; mmgenre's own earlier outputs are replaced."""
    from mmgenre import runs

    user = tmp_path / "mine"
    user.mkdir()
    (user / "report.md").write_text("my notes")
    with pytest.raises(runs.RunFolderError, match=r"holds 1 file\(s\) mmgenre did not write"):
        runs.check_report_dir(str(user))
    assert (user / "report.md").read_text() == "my notes"
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / runs.COMPLETE).write_text("{}")
    runs.check_report_dir(str(tmp_path / "earlier"))  # an earlier evaluation: fine
    (tmp_path / "killed").mkdir()  # an evaluation killed after its first files: rerun it there
    (tmp_path / "killed" / "thresholds.json").write_text("{}")
    runs.check_report_dir(str(tmp_path / "killed"))
    runs.check_report_dir(str(tmp_path / "new"))

    theirs, ours = tmp_path / "theirs.csv", tmp_path / "ours.csv"
    theirs.write_text("title,rating\nAlien,9\n")
    ours.write_text("id,split,Drama,Comedy,predicted\n1,test,0.1,0.9,Comedy\n")

    def earlier(header):
        return header.startswith("id,split,") and header.endswith(",predicted")

    with pytest.raises(runs.RunFolderError, match="mmgenre did not write it.*--overwrite"):
        runs.check_output_file(str(theirs), False, earlier)
    runs.check_output_file(str(ours), False, earlier)
    runs.check_output_file(str(theirs), True, earlier)  # the user said so
    assert theirs.read_text() == "title,rating\nAlien,9\n"


def test_training_into_a_folder_of_the_users_files_is_refused(synthetic_dir, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    with pytest.raises(runs.RunFolderError, match="mmgenre did not write"):
        train_and_evaluate(_cfg(synthetic_dir), str(mine), verbose=0)
    assert [p.name for p in mine.iterdir()] == ["report.md"]
    assert (mine / "report.md").read_text() == "my notes"
