"""Dataset -> PreparedData: load, validate, label and vectorize, then tf.data per split.

The one place where a dataset folder becomes what a model trains and is scored
on: validated rows per split with aligned targets, the genre vocabulary and the
overview vectorizer (both fitted on train only), and a fingerprint of all of it
that a resumed run checks (``mmgenre.runs``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from mmgenre import genres as genres_lib
from mmgenre import tasks
from mmgenre.config import MMIMDB_GENRES, SPLITS
from mmgenre.data import labels as labels_lib
from mmgenre.data import pipeline
from mmgenre.data.records import detect_layout, load_records
from mmgenre.data.validate import select_modalities, validate


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What ``prepare_data`` needs of a model: the inputs it reads, and whether it takes rows
    lacking one of them (a registry.ModelSpec has both)."""

    modalities: tuple
    accepts_missing: bool = False


@dataclasses.dataclass
class PreparedData:
    """Validated rows per split with aligned targets, and the fitted vocabularies."""

    splits: dict  # split -> (DataFrame, (n, n_genres) float32 targets)
    vocab: labels_lib.GenreVocabulary
    vectorizer: object
    report: object
    modalities: tuple
    allow_missing: bool = False
    skipped_unlabelled: int = 0
    unseen_genres: dict = dataclasses.field(default_factory=dict)
    dataset_fingerprint: str = ""  # the movies read (ids, splits, genres, texts), whatever the model
    # Scoring a trained run: how the data's genre spellings met its vocabulary (genres.GenreMapping).
    genre_mapping: object = None
    # {"stand_in": rows fed one input's absent signal, "skipped_without_input": rows dropped}
    inputs: dict = dataclasses.field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of what the model is fitted to: row ids, targets per split, genres and
        the overview vocabulary. A resume checks it, so a run never continues on other data."""
        digest = hashlib.sha256()
        for split in SPLITS:
            rows, targets = self.splits[split]
            digest.update(json.dumps([split, list(map(str, rows["id"]))]).encode())
            digest.update(np.ascontiguousarray(targets, np.float32).tobytes())
        digest.update(json.dumps(self.vocab.genres).encode())
        if self.vectorizer is not None:
            digest.update(json.dumps(self.vectorizer.get_vocabulary()).encode())
        return digest.hexdigest()[:16]


def prepare_data(data_cfg, spec, vocab=None, vectorizer=None, path=None,
                 show_progress=True, require_genres=True, genre_map=None,
                 only_split: str | None = None) -> PreparedData:
    """Loads, validates and labels a dataset for the model described by ``spec``.

    Args:
        data_cfg: mmgenre.config.DataConfig.
        spec: an ``Inputs`` or a registry.ModelSpec: ``modalities`` (the
            model's inputs) and ``accepts_missing``. Rows need every input of
            the model, or (models that accept a missing modality) at least one.
        vocab, vectorizer: a trained run's, when scoring it on any data: nothing
            is fitted then (its vectorizer, or None for graphs that tokenize
            inside), genre spellings are mapped onto ``vocab`` (``mmgenre.genres``,
            with ``genre_map`` overrides) and rows lacking one input of a
            two-input model are kept and fed that input's absent signal.
            Otherwise both are fitted on this dataset's train split only.
        path: a dataset other than ``data_cfg.path``.
        require_genres: False keeps rows without genres (prediction on unlabelled data;
            needs ``vocab``).
        only_split: read only this split's rows (scoring one split: the other splits'
            posters are never opened).
    """
    records, mmimdb = read_records(data_cfg, path or data_cfg.path)
    if only_split:
        records = records[records["split"] == only_split].reset_index(drop=True)
        if records.empty:
            raise ValueError(f"{path or data_cfg.path}: split {only_split!r} has no rows")
    modalities, scoring = spec.modalities, vocab is not None
    table, report = validate(records, data_cfg.bad_input, modalities, data_cfg.max_image_pixels,
                             show_progress=show_progress, require_genres=require_genres)
    mapping = None
    if not scoring:
        table, merged = labels_lib.normalise_genres(table)
        for kept, spellings in merged.items():
            report.add("genre_spelling_merged", f"{kept!r} <- {spellings}", note=True)
        if merged:
            print("note: genre spellings merged: " + "; ".join(
                f"{kept!r} <- {spellings}" for kept, spellings in merged.items()))
    # Scoring, a model reading two inputs takes rows with one: the absent one gets its signal.
    allow_missing = spec.accepts_missing or (scoring and len(modalities) > 1)
    table = select_modalities(table, modalities, require_all=not allow_missing)
    inputs = {}
    if scoring:
        inputs = count_inputs(records, table, modalities, allow_missing, path or data_cfg.path)
        table, mapping = genres_lib.map_onto(table, vocab.genres, genre_map)
        check_shared_genres(mapping, vocab, path or data_cfg.path, require_genres)
    if vocab is None:
        vocab = (labels_lib.GenreVocabulary.from_train(table, 1, top=MMIMDB_GENRES) if mmimdb
                 else labels_lib.GenreVocabulary.from_train(table, data_cfg.min_genre_count))
    splits, skipped = _split_targets(table, vocab, data_cfg)
    if "overview" in modalities and vectorizer is None and not scoring:
        vectorizer = fit_vectorizer(splits["train"][0], data_cfg, path or data_cfg.path)
    unseen = ({} if scoring or not len(table)
              else vocab.unseen(table[table["split"] != "train"]))
    return PreparedData(splits, vocab, vectorizer, report, tuple(modalities), allow_missing,
                        skipped, dict(unseen), records_fingerprint(records), mapping, inputs)


def count_inputs(records, table, modalities, allow_missing: bool, path) -> dict:
    """{"skipped_without_input", "stand_in"} row counts of data scored by a trained run;
    refuses data where no row has an input the model reads."""
    lacking = rows_without_input(records, modalities, not allow_missing)
    if table.empty:
        raise ValueError(f"{path}: no row has an input the model reads "
                         f"({' or '.join(modalities)}); {lacking} row(s) lack it")
    return {"skipped_without_input": lacking,
            "stand_in": int((~table[[f"has_{m}" for m in modalities]].all(axis=1)).sum())}


def fit_vectorizer(train_rows, data_cfg, path):
    """The overview vocabulary adapted on the train overviews only."""
    train_texts = [t for t in train_rows["overview"] if isinstance(t, str)]
    if not train_texts:
        raise ValueError(f"{path}: no usable train overviews to adapt the vectorizer on")
    return pipeline.build_vectorizer(train_texts, data_cfg.max_tokens, data_cfg.sequence_length)


def rows_without_input(records, modalities, require_all: bool) -> int:
    """Rows of the dataset that lack the model's input (every one of ``modalities`` with
    ``require_all``, else all of them): an empty poster path or overview. Unreadable files are
    the validation report's to count."""
    present = [records[m].map(lambda v: isinstance(v, str) and bool(v.strip())) for m in modalities]
    have = (np.logical_and.reduce if require_all else np.logical_or.reduce)(present)
    return int((~np.asarray(have, bool)).sum())


def _split_targets(table, vocab, data_cfg):
    """({split: (rows, targets)}, movies skipped for having no kept genre (single-label))."""
    splits, skipped, task = {}, 0, tasks.get(data_cfg.task)
    for split in SPLITS:
        rows = table[table["split"] == split].reset_index(drop=True)
        if split == "train" and data_cfg.train_limit:
            rows = subsample(rows, data_cfg.train_limit)
        if data_cfg.limit:
            rows = rows.head(data_cfg.limit)
        targets = task.targets(vocab, rows, data_cfg.single_label_rule)
        labelled = task.labelled(targets)  # single-label: movies without a kept genre go
        skipped += int((~labelled).sum())
        splits[split] = (rows[labelled].reset_index(drop=True), targets[labelled])
    return splits, skipped


def check_shared_genres(mapping, vocab, path, require_genres=True):
    """Refuses data that shares fewer than two genres with the run: its scores would say
    nothing (mAP over one genre), and the usual cause is a catalogue whose names need a
    ``--genre-map``. Prediction (``require_genres`` False) needs no genres: exempt."""
    if not require_genres:
        return
    if len(mapping.shared) < 2:
        raise ValueError(
            f"{path}: shares {len(mapping.shared)} genre(s) with the run "
            f"({mapping.shared}); the run's genres: {list(vocab.genres)}; the data's other "
            f"genres: {list(mapping.ignored)}; map spellings with --genre-map DATA=RUN")


def read_records(data_cfg, path):
    """(movie table of ``path`` under data.protocol and data.limit, True for the MM-IMDb
    protocol)."""
    mmimdb = dataset_protocol(data_cfg, path) == "mmimdb"
    records = load_records(path, allow_outside=data_cfg.allow_outside_files, longest_plot=mmimdb)
    if data_cfg.limit:
        # Smoke runs: the first rows of each split, taken before any poster is opened (checking
        # every poster of posters-movielens took 20 s of a "quick" run); rows dropped as bad
        # input are not replaced, and the genre vocabulary comes from these train rows.
        records = records.groupby("split", sort=False).head(data_cfg.limit).reset_index(drop=True)
    return records, mmimdb


def dataset_protocol(data_cfg, path) -> str:
    """data.protocol with "auto" resolved by the dataset's layout."""
    if data_cfg.protocol != "auto":
        return data_cfg.protocol
    return "mmimdb" if detect_layout(path) == "mmimdb" else "min_count"


def records_fingerprint(records) -> str:
    """A hash of the dataset's movies (id, split, genres, overview, poster file name), the same
    for every model trained on it: runs combined by score fusion must share it."""
    digest = hashlib.sha256()
    for column in ("id", "split", "genres", "overview", "poster"):
        values = records[column] if column in records else []
        digest.update(json.dumps([column, [str(v) if column != "poster" else
                                           str(v).replace("\\", "/").rsplit("/", 1)[-1]
                                           for v in values]]).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def subsample(rows, n: int):
    """The first ``n`` rows of one fixed shuffle (seed 0, independent of train.seed):
    the subsets of a learning curve are nested and identical across seeds."""
    order = np.random.default_rng(0).permutation(len(rows))
    return rows.iloc[np.sort(order[:n])].reset_index(drop=True)


def takes_raw_text(model) -> bool:
    """True when the model's "overview" input is a string (TF-Hub text encoders)."""
    inputs = model.input if isinstance(model.input, dict) else {}
    return "overview" in inputs and inputs["overview"].dtype == "string"


def make_split_dataset(data_cfg, prepared: PreparedData, split: str, training=False, seed=0,
                       raw_text=False):
    """A batched tf.data pipeline over ``split`` yielding ({"poster", "overview"}, targets)."""
    rows, targets = prepared.splits[split]
    if rows.empty:
        raise ValueError(f"split {split!r} has no usable rows for inputs {prepared.modalities}")
    cache = data_cfg.cache
    if cache not in ("memory", "none"):
        cache = f"{cache}-{split}"
    return pipeline.make_dataset(
        rows, targets, prepared.modalities, data_cfg.image_size, prepared.vectorizer,
        data_cfg.batch_size, training=training, cache=cache,
        augment=data_cfg.augment and training, seed=seed, allow_missing=prepared.allow_missing,
        raw_text=raw_text)
