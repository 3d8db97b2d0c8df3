"""Writing files safely: atomic writes, checksummed array caches, leftovers of killed writers.

Following Orbax and tf.train.CheckpointManager: every file is written under a temporary name
and renamed into place (``os.replace`` is atomic on POSIX), so a kill at any moment leaves
either the old file or the new one, never half of one. Temporaries of killed writers (their
process gone) are removed by the next write. Run folders (``mmgenre.runs``) and every cache
under $MMGENRE_HOME write through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time

import numpy as np
import pandas as pd

STALE_TEMPORARY_SECONDS = 60  # untouched this long and its process gone: a killed write


def _left_by_dead_writers(folder: str, pattern: str):
    """Paths in ``folder`` whose names fullmatch ``pattern`` (group 1: the writer's pid) and
    whose writer process is gone."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(folder):
            match = re.fullmatch(pattern, entry)
            if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
                yield os.path.join(folder, entry)


def remove_stale_temporaries(folder: str, name: str) -> list:
    """Removes ``.tmp<pid>-<name>`` files beside ``name`` left by killed writers (their process
    is gone and the file untouched for a minute); returns what it removed. Only names this
    module writes are touched."""
    removed = []
    for path in _left_by_dead_writers(folder, rf"\.tmp(\d+)-{re.escape(name)}"):
        if os.path.isfile(path) and time.time() - os.path.getmtime(path) > STALE_TEMPORARY_SECONDS:
            os.remove(path)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside ``path`` (same extension, so Keras, NumPy and
    matplotlib keep their formats); renames it to ``path`` only if the block succeeds."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, name)
    tmp = os.path.join(folder, f".tmp{os.getpid()}-{name}")
    try:
        yield tmp
        if os.path.isfile(tmp):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)


def write_json(path: str, obj):
    write_text(path, json.dumps(obj, indent=2))


def write_csv(frame: pd.DataFrame, path: str):
    write_text(path, frame.to_csv(index=False))


@contextlib.contextmanager
def weights_through_disk():
    """Keras writes a .keras file's weights through a temporary file beside it instead of a
    copy in memory. Keras chooses memory whenever the weights fit in half the free memory;
    for a graph holding all-mpnet-base-v2 (438 MB) that copy was the peak of the README's
    first command's encoder-head row (``benchmarks/accuracy.py`` with that row alone, large
    set, this machine: 2.72 GB, 2.58 GB through disk). It is Keras' own path for large
    models; where a Keras version lacks the switch, nothing changes. (Loading keeps Keras'
    choice: its disk path extracts into the run folder, which evaluate must not write.)"""
    from keras.src.saving import saving_lib

    chooses = getattr(saving_lib, "is_memory_sufficient", None)
    if chooses is None:
        yield
        return
    saving_lib.is_memory_sufficient = lambda model: False
    try:
        yield
    finally:
        saving_lib.is_memory_sufficient = chooses


def save_model(model, path: str):
    with atomic_path(path) as tmp, weights_through_disk():
        model.save(tmp)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_problem(path: str, rows: int | None):
    """Why the cached array at ``path`` cannot be trusted, or None. An array without its
    checksum (a kill between the two writes) is not trusted: nothing vouches for it."""
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            recorded = f.read().strip()
    except OSError:
        return "has no recorded SHA-256"
    if recorded != file_sha256(path):
        return "does not match its recorded SHA-256"
    try:
        cached = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return "is unreadable"
    if rows is not None and len(cached) != rows:
        return f"has {len(cached)} rows, not {rows}"
    return None


def cached_array(path: str, compute, rows: int | None = None):
    """The array saved at ``path`` if it matches the SHA-256 recorded beside it
    (``path``.sha256) and has ``rows`` rows when given, else ``compute()`` saved there
    atomically with its checksum. A cache cut short or changed is named and recomputed instead
    of breaking (or silently changing) every run that shares it; two processes computing the
    same cache at once each rename a whole file into place."""
    if os.path.exists(path):
        problem = _cache_problem(path, rows)
        if problem is None:
            return np.load(path, allow_pickle=False)
        print(f"warning: cache file {path} {problem}; computing it again", file=sys.stderr)
    array = compute()
    with atomic_path(path) as tmp:
        np.save(tmp, array)
        checksum = file_sha256(tmp)
    write_text(path + ".sha256", checksum)  # after the array: a checksum never vouches for less
    return array


def read_json(path: str):
    """The parsed file, or None when it is missing, empty or cut short."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(path: str):
    """Removes ``<path>.tmp<pid>`` folders left by killed commands (their pid is gone)."""
    import shutil

    parent, base = os.path.split(os.path.abspath(path))
    for stale in _left_by_dead_writers(parent, rf"{re.escape(base)}\.tmp(\d+)"):
        if os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)
