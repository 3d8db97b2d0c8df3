"""Loads a dataset into one table of movies: ids, genres, overview, poster path, split.

Two on-disk layouts are read the same way:

* CSV layout (the sample sets, or any user CSV): ``movies.csv`` with columns
  id, genres ("|"-separated), overview, poster (path relative to the CSV),
  split; title and year are optional.
* MM-IMDb layout (Arevalo et al. 2017): ``dataset/<id>.json`` holding "plot"
  (a list of strings) and "genres" (a list), ``dataset/<id>.jpeg``, and
  ``split.json`` mapping "train"/"dev"/"test" to lists of ids.

The result is a pandas DataFrame with one row per movie and the columns
``id, title, genres (list of str), overview (str or None), poster (path or
None), split, source, problem`` where ``source`` names the file and row for
error messages and ``problem`` is a reason code of ``mmgenre.data.validate``
found while reading (a file outside the dataset, metadata of the wrong type) or
None. Every other per-row check lives in ``mmgenre.data.validate``.

Containment: every file a dataset names must resolve, symlinks followed, inside
the dataset's folder; a poster path like ``../../etc/passwd``, an absolute
path, a symlink pointing elsewhere or an MM-IMDb id like ``../x`` is never
opened but reported per row (``allow_outside=True`` lifts this for users who
keep posters elsewhere, config ``data.allow_outside_files``).
"""

from __future__ import annotations

import json
import os

import pandas as pd

REQUIRED_CSV_COLUMNS = ("id", "genres", "overview", "poster", "split")
COLUMNS = ("id", "title", "genres", "overview", "poster", "split", "source", "problem")
# Bytes that are not UTF-8 survive reading as lone surrogates (surrogateescape),
# so validation can name the row instead of pandas failing on the whole file.
ENCODING_ERRORS = "surrogateescape"


class DataError(ValueError):
    """A dataset that cannot be read, naming the file (and row) and the reason."""


def detect_layout(path: str) -> str:
    """Returns "csv" or "mmimdb" for a dataset path, or raises DataError."""
    if os.path.isfile(path) and path.endswith(".csv"):
        return "csv"
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "movies.csv")):
            return "csv"
        if os.path.isfile(os.path.join(path, "split.json")):
            return "mmimdb"
        raise DataError(
            f"{path}: not a dataset folder (expected movies.csv for the CSV layout, or "
            "split.json and dataset/ for the MM-IMDb layout)"
        )
    raise DataError(f"dataset not found: {path}")


def load_records(path: str, allow_outside: bool = False, longest_plot: bool = True) -> pd.DataFrame:
    """Reads a dataset in either layout into the movie table described above.

    ``longest_plot``: an MM-IMDb movie's overview is its longest plot summary
    (the dataset authors' make_dataset.py), else its first.
    """
    layout = detect_layout(path)
    table = (load_csv(path, allow_outside) if layout == "csv"
             else load_mmimdb(path, allow_outside, longest_plot))
    if table.empty:
        raise DataError(f"{path}: the dataset lists no movies")
    table.attrs["path"] = os.path.abspath(path)
    table.attrs["layout"] = layout
    return table


def inside(path: str, root: str) -> bool:
    """True when ``path`` resolves (symlinks followed) inside folder ``root``."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, top]) == top


def _split_genres(value) -> list:
    if not isinstance(value, str):
        return []
    return [g.strip() for g in value.split("|") if g.strip()]


# Characters that render as nothing: an overview made only of them is empty.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def _text_or_none(value):
    if not isinstance(value, str) or not value.translate(_INVISIBLE).strip():
        return None
    return value.strip()


def load_csv(path: str, allow_outside: bool = False) -> pd.DataFrame:
    csv_path = os.path.join(path, "movies.csv") if os.path.isdir(path) else path
    root = os.path.dirname(os.path.abspath(csv_path))
    try:
        raw = pd.read_csv(
            csv_path, dtype=str, keep_default_na=False, encoding="utf-8",
            encoding_errors=ENCODING_ERRORS,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{csv_path}: cannot parse CSV: {err}") from None
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing required column(s) {missing}; found {list(raw.columns)}"
        )
    name = os.path.basename(csv_path)
    posters = [os.path.normpath(os.path.join(root, p.strip())) if p.strip() else None
               for p in raw["poster"]]
    problem = [None if allow_outside or p is None or inside(p, root) else "poster_outside_dataset"
               for p in posters]
    table = pd.DataFrame(
        {
            "id": raw["id"].str.strip(),
            "title": raw["title"] if "title" in raw.columns else raw["id"],
            "genres": raw["genres"].map(_split_genres),
            # object dtype keeps None as None (pandas 3 string columns turn it into NaN).
            "overview": pd.Series([_text_or_none(v) for v in raw["overview"]], dtype=object),
            "poster": pd.Series([None if bad else p for p, bad in zip(posters, problem)],
                                dtype=object),
            "split": raw["split"].str.strip().str.lower(),
            # Row numbers as a spreadsheet shows them: header is line 1.
            "source": [f"{name} line {i + 2}" for i in range(len(raw))],
            "problem": pd.Series(problem, dtype=object),
        }
    )
    return table


def load_mmimdb(path: str, allow_outside: bool = False, longest_plot: bool = True) -> pd.DataFrame:
    split_path = os.path.join(path, "split.json")
    try:
        with open(split_path, encoding="utf-8") as f:
            splits = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{split_path}: not valid JSON: {err}") from None
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise DataError(f"{split_path}: expected a mapping of split name to a list of ids")
    folder = os.path.join(path, "dataset")
    rows = []
    for split, ids in splits.items():
        for movie_id in ids:
            movie_id = str(movie_id)
            json_path = os.path.join(folder, f"{movie_id}.json")
            row = {
                "id": movie_id, "title": movie_id, "genres": [], "overview": None,
                "poster": os.path.join(folder, f"{movie_id}.jpeg"),
                "split": str(split).strip().lower(),
                "source": os.path.join("dataset", f"{movie_id}.json"), "problem": None,
            }
            rows.append(row)
            if not allow_outside and not inside(json_path, folder):
                row.update(poster=None, problem="outside_dataset")
                continue
            try:
                with open(json_path, "rb") as f:
                    meta = json.loads(f.read().decode("utf-8", errors=ENCODING_ERRORS))
            except FileNotFoundError:
                row["problem"] = "missing_metadata"
                continue
            except (OSError, json.JSONDecodeError) as err:
                raise DataError(f"{json_path}: not valid JSON: {err}") from None
            if not isinstance(meta, dict):
                row["problem"] = "bad_metadata"
                continue
            plot, genres = meta.get("plot"), meta.get("genres")
            if isinstance(plot, str):
                plot = [plot]
            if genres is not None and not (isinstance(genres, list)
                                           and all(isinstance(g, str) for g in genres)):
                # A string here would otherwise be split into single characters.
                row["problem"] = "bad_metadata"
                continue
            # MM-IMDb keeps several plot summaries per movie; the authors' make_dataset.py
            # (johnarevalo/gmu-mmimdb) keeps the longest. A plot of another type (a number,
            # a mapping) leaves the overview missing.
            texts = [p for p in plot if isinstance(p, str)] if isinstance(plot, list) else []
            if texts:
                row["overview"] = _text_or_none(max(texts, key=len) if longest_plot else texts[0])
            row["genres"] = [g.strip() for g in genres or [] if g.strip()]
            title = meta.get("title")
            row["title"] = title if isinstance(title, str) and title.strip() else movie_id
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)
