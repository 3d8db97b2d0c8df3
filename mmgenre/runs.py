"""The run folder: its layout (``RunFolder``), one writer at a time, a completion record, a data
fingerprint. Its files are written atomically (``mmgenre.files``).

What says "finished" is written last and trusted only while the files
it lists are there with the sizes it recorded. A folder without it is resumed or
re-evaluated, never read as a result. ``RunFolder`` is the only place that
names a run folder's files.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import time

import pandas as pd

from mmgenre.files import pid_alive, read_json, write_csv, write_json

COMPLETE = "complete.json"
LOCK = ".lock"
FINGERPRINT = "fingerprint.json"
HISTORY = "history.csv"
DATASET = "dataset.json"  # the dataset's absolute path and fingerprint: found from any folder
PROBABILITIES = "probabilities.npz"  # dev/test probabilities with movie ids; score fusion reads them
STALE_EMPTY_LOCK_SECONDS = 60  # an empty lock older than this lost its writer


class _File:
    """A file of the run folder: ``RunFolder(path).<name>`` is its path."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, folder, owner=None):
        return self.name if folder is None else os.path.join(folder.path, self.name)


class RunFolder:
    """The paths of a run folder (``mmgenre.training.trainer`` and the evaluation fill it)::

        config.yaml          config          the resolved config (rerunning with it resumes)
        fingerprint.json     fingerprint     hash of the prepared rows, targets and vocabularies
        dataset.json         dataset         the dataset's absolute path and fingerprint
        validation.json      validation      the data validation report
        genres.json          genres          the genre vocabulary
        vectorizer.json      vocabulary      the overview vocabulary (token-id models)
        .lock                lock            present while a process writes here
        backup*/             backup(phase)   BackupAndRestore state of an unfinished phase
                                             (BACKUP_WEIGHTS; multi-worker: MULTIWORKER_*)
        history.csv          history         one row per finished epoch
        best.keras           model           the best model (raw inputs to probabilities)
        phase1.done          phase_one_done  the first training phase finished
        training_curves.png  training_curves
        thresholds.json      thresholds      per-genre thresholds chosen by the rule
        probabilities.npz    probabilities   dev/test (and out-of-fold train) probabilities, ids
        metrics.json         metrics         every score; metrics.csv (metrics_table) the table
        report.md, errors.md report, errors
        per_genre.csv        per_genre       and per_genre_f1.png (per_genre_plot)
        confusion_matrix.png confusion_plot  single-label runs
        complete.json        complete        written last: the files of a finished run, sizes
        predictions.csv      predictions     `mmgenre predict --data` without --out
        score_fusion/        score_fusion    `mmgenre score-fusion` with this run first, without --out

    Evaluations on other data (``eval_dir``: eval/<dataset>-<split>/) and score fusions are
    folders with the same evaluation files.
    """

    config = _File("config.yaml")
    fingerprint = _File(FINGERPRINT)
    dataset = _File(DATASET)
    validation = _File("validation.json")
    genres = _File("genres.json")
    vocabulary = _File("vectorizer.json")
    lock = _File(LOCK)
    history = _File(HISTORY)
    model = _File("best.keras")
    phase_one_done = _File("phase1.done")
    training_curves = _File("training_curves.png")
    thresholds = _File("thresholds.json")
    probabilities = _File(PROBABILITIES)
    metrics = _File("metrics.json")
    metrics_table = _File("metrics.csv")
    report = _File("report.md")
    errors = _File("errors.md")
    per_genre = _File("per_genre.csv")
    per_genre_plot = _File("per_genre_f1.png")
    confusion_plot = _File("confusion_matrix.png")
    complete = _File(COMPLETE)
    predictions = _File("predictions.csv")  # mmgenre predict --data, unless --out says elsewhere
    score_fusion = _File("score_fusion")  # `mmgenre score-fusion RUN ...` without --out: in the first

    def __init__(self, path):
        self.path = str(path)

    # BackupAndRestore folder of each training phase: the first, fine-tuning, multi-worker.
    PHASES = {"first": "backup", "fine_tune": "backup_finetune", "multiworker": "backup_multiworker"}
    logs = _File("logs")  # TensorBoard
    # Inside a backup folder: Keras BackupAndRestore's weights; the multi-worker loop's own state.
    BACKUP_WEIGHTS = "latest.weights.h5"
    MULTIWORKER_STATE, MULTIWORKER_WEIGHTS = "state.json", "last.weights.h5"

    def backup(self, phase: str) -> str:
        """The BackupAndRestore folder of training phase ``phase`` (a key of ``PHASES``)."""
        return os.path.join(self.path, self.PHASES[phase])

    def progress_files(self) -> list:
        """What a training that ran leaves for a rerun to resume from."""
        return [self.model, self.phase_one_done, *(self.backup(p) for p in self.PHASES)]

    def eval_dir(self, dataset: str, split: str) -> str:
        return os.path.join(self.path, "eval", f"{dataset}-{split}")


class SearchFolder:
    """The paths of a search (``mmgenre tune``): its state folder (``state``: keras-tuner's
    project, the fits log, TensorBoard logs) and the reports written to ``--out``::

        fits.jsonl        fits          one line per fitted trial (values, epochs, seconds)
        logs/             logs          TensorBoard, one folder per trial
        trials.csv/.md    trials_table, trials_report
        objective.png     objective_plot
        best_config.yaml  best_config   the best completed trial as an experiment config
        best/             best_run      that config trained (--retrain-best)
    """

    fits = _File("fits.jsonl")
    logs = _File("logs")
    trials_table = _File("trials.csv")
    trials_report = _File("trials.md")
    objective_plot = _File("objective.png")
    best_config = _File("best_config.yaml")
    best_run = _File("best")  # --retrain-best: the best trial trained as a run folder
    project = _File("trials")  # keras-tuner's project folder
    PROCESS_LOG = "{role}.log"  # a local worker's output (chief.log, tuner0.log, ...) in --log-dir

    def __init__(self, path):
        self.path = str(path)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (busy, other data, unfinished), with the fix."""


# --- history --------------------------------------------------------------------------------

def read_history(run_dir: str) -> pd.DataFrame:
    """Per-epoch history; an empty frame when there is none yet (or only an empty file)."""
    path = RunFolder(run_dir).history
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def write_history_row(run_dir: str, epoch: int, logs: dict):
    """Adds (or replaces: a resumed epoch ran again) the row of ``epoch``, rewriting the file."""
    history = read_history(run_dir)
    if "epoch" in history:
        history = history[history["epoch"] < epoch]
    row = pd.DataFrame([{"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}])
    write_csv(pd.concat([history, row], ignore_index=True) if len(history) else row,
              RunFolder(run_dir).history)


# --- lock -----------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(run_dir: str):
    """Holds ``run_dir/.lock`` for one writer; a second run is refused, a stale lock (its
    process is gone, same host) is taken over with a note."""
    os.makedirs(run_dir, exist_ok=True)
    path = RunFolder(run_dir).lock
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_json(path) or {}
            pid, host = holder.get("pid"), holder.get("host")
            if isinstance(pid, int) and host == me["host"] and not pid_alive(pid):
                print(f"note: {run_dir}: taking over a stale lock of process {pid} (it is gone)")
                os.remove(path)
                continue
            if not holder:
                # Empty: its writer is between creating and filling it (a moment), or died
                # there. Only an old empty lock is stale.
                if time.time() - os.path.getmtime(path) < STALE_EMPTY_LOCK_SECONDS:
                    raise RunFolderError(f"{run_dir} is being locked by another process; "
                                         "wait for it or use another workdir")
                os.remove(path)
                continue
            raise RunFolderError(
                f"{run_dir} is in use by process {pid} on {host} (since {holder.get('started')}); "
                f"wait for it, use another workdir, or delete {path} if that process is gone")
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def waiting_lock(folder: str, timeout: float = 3600.0, poll: float = 0.5):
    """``locked(folder)``, waiting while another live process holds it (a second
    ``encoders prepare`` of the same encoder waits for the first, then finds it prepared)."""
    deadline, said = time.time() + timeout, False
    while True:
        hold = locked(folder)
        try:
            hold.__enter__()
            break
        except RunFolderError as err:
            if time.time() > deadline:
                raise
            if not said:
                print(f"waiting: {err}", file=sys.stderr)
                said = True
            time.sleep(poll)
    try:
        yield
    finally:
        hold.__exit__(None, None, None)


# --- completion and fingerprint ------------------------------------------------------------

def mark_complete(run_dir: str, extra: dict | None = None):
    """Writes the completion record last: every file now in ``run_dir`` with its size."""
    files = {}
    for name in sorted(os.listdir(run_dir)):
        full = os.path.join(run_dir, name)
        if os.path.isfile(full) and not name.startswith(".") and name != COMPLETE:
            files[name] = os.path.getsize(full)
    write_json(RunFolder(run_dir).complete, {
        "finished": datetime.datetime.now().isoformat(timespec="seconds"), "files": files,
        **(extra or {})})


def is_complete(run_dir: str) -> bool:
    """True when the completion record exists and every file it lists is there, same size."""
    record = read_json(RunFolder(run_dir).complete)
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return False
    for name, size in record["files"].items():
        full = os.path.join(run_dir, name)
        if not os.path.isfile(full) or os.path.getsize(full) != size:
            return False
    return True


def clear_complete(run_dir: str):
    """Withdraws the record before a finished folder is rewritten (re-scoring)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(RunFolder(run_dir).complete)


def require_complete(run_dir: str, fix: str = "rerun its command to finish it"):
    """Raises RunFolderError naming ``fix`` unless the folder's completion record holds."""
    if not is_complete(run_dir):
        raise RunFolderError(f"{run_dir} is not a finished run (no valid {COMPLETE}): {fix}")


def has_progress(run_dir: str) -> bool:
    """True when training has left something a rerun resumes from."""
    return any(os.path.exists(path) for path in RunFolder(run_dir).progress_files()) \
        or len(read_history(run_dir)) > 0


def record_dataset(out_dir: str, path: str, fingerprint: str):
    """Records the dataset a result was computed on, as an absolute path, so commands reading
    the folder find it from any current folder (a config's relative path does not)."""
    write_json(RunFolder(out_dir).dataset, {"path": os.path.abspath(path),
                                                "fingerprint": fingerprint})


def dataset_path(run_dir: str, configured: str | None = None) -> str:
    """``configured`` (a config's data.path) when it exists from here, else the dataset the run
    recorded; raises RunFolderError naming both and the fix when neither is there."""
    if configured and os.path.exists(configured):
        return configured
    recorded = (read_json(RunFolder(run_dir).dataset) or {}).get("path")
    if recorded and os.path.exists(recorded):
        return recorded
    tried = " nor ".join(repr(p) for p in (configured, recorded) if p) or "no recorded path"
    raise RunFolderError(f"{run_dir}: its dataset is not found ({tried}, from {os.getcwd()}); "
                         "pass --data DIR")


def check_fingerprint(run_dir: str, fingerprint: str):
    """Stores the data fingerprint of a new run; refuses to resume one on other data."""
    path = RunFolder(run_dir).fingerprint
    stored = read_json(path)
    if isinstance(stored, dict) and has_progress(run_dir) and stored.get("data") != fingerprint:
        raise RunFolderError(
            f"{run_dir} was trained on other data or vocabularies (fingerprint {stored.get('data')}, "
            f"now {fingerprint}): the dataset changed since this run started; use another workdir")
    write_json(path, {"data": fingerprint})


# --- output folders that are not run folders (exports, downloads) ----------------------------

OUTPUT_MARKER = ".mmgenre-output"  # in every output folder mmgenre writes whole: it may replace it


def check_output_dir(path: str, overwrite: bool = False, ours=(OUTPUT_MARKER,),
                     flag: str | None = "--overwrite"):
    """Refuses ``path`` unless it is absent, empty, a folder mmgenre wrote (it holds one of
    ``ours``) or the user said ``overwrite`` (the command's ``flag``; None when it has none):
    mmgenre replaces only what it wrote."""
    if not os.path.lexists(path) or overwrite:
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise RunFolderError(f"{path} exists and is not a folder; choose another output path")
    entries = set(os.listdir(path))
    if entries and not entries & set(ours):
        raise RunFolderError(f"{path} holds {len(entries)} file(s) mmgenre did not write (e.g. "
                             f"{sorted(entries)[0]!r}); choose an empty or new folder"
                             + (f", or pass {flag} to replace it" if flag else ""))


# Files only mmgenre writes: a folder holding one of them is a run, an evaluation (finished, or
# killed after its first file: thresholds or probabilities come first), a fusion or a search
# mmgenre made, and writing its reports again replaces only mmgenre's files.
OURS = (COMPLETE, LOCK, OUTPUT_MARKER, RunFolder.config, RunFolder.thresholds, PROBABILITIES, DATASET,
        SearchFolder.fits, SearchFolder.trials_table, SearchFolder.project)


def check_report_dir(path: str):
    """``check_output_dir`` for the folders reports are written into (``--out`` of evaluate,
    score-fusion, tune; a train workdir): any folder of mmgenre's (``OURS``) is reused."""
    check_output_dir(path, ours=OURS, flag=None)


def check_output_file(path: str, overwrite: bool, ours) -> None:
    """Refuses to replace an existing file unless ``ours(first line)`` says mmgenre wrote it or
    the user said ``overwrite``."""
    if overwrite or not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise RunFolderError(f"{path} is a folder; --out takes a CSV file path")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    if not ours(first):
        raise RunFolderError(f"{path} exists and mmgenre did not write it; choose another path or "
                             "pass --overwrite to replace it")
