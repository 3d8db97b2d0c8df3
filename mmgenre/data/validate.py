"""Per-row checks at load time, before any tf.data pipeline runs.

Every problem has a reason code and a scope:

* ``row`` problems (duplicate id, unknown split, no genres) drop the movie;
* ``poster`` problems (missing, empty, truncated, not an image, huge) drop the
  poster only, so the movie stays usable for text models;
* ``overview`` problems (missing/empty, not UTF-8) drop the overview only.

Convertible inputs are not problems but are counted as notes: a PNG or GIF
under a .jpg name (tf.io.decode_image decodes by content) and grayscale,
palette, RGBA, 16-bit or CMYK posters (decoded to 3 channels). Under the
``skip`` policy problems are counted per reason and reported once; under
``strict`` validation raises a DataError naming each file or row and reason.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import os
import warnings

import pandas as pd
from PIL import Image

from mmgenre.config import SPLITS
from mmgenre.data.records import DataError
from mmgenre.progress import progress

MODALITIES = ("poster", "overview")

REASONS = {
    "duplicate_id": ("row", "id appears more than once; the first row is kept"),
    "outside_dataset": ("row", "id names a file outside the dataset folder; not read"),
    "missing_metadata": ("row", "no <id>.json metadata file for this id"),
    "bad_metadata": ("row", "metadata is not a mapping, or its genres are not a list of strings"),
    "non_utf8_genres": ("row", "genre names are not valid UTF-8"),
    "unknown_split": ("row", f"split is not one of {list(SPLITS)}"),
    "no_genres": ("row", "no genres listed"),
    "poster_outside_dataset": ("poster", "poster path resolves outside the dataset folder "
                               "(data.allow_outside_files: true allows it); not read"),
    "missing_poster": ("poster", "no poster listed, or its file not found"),
    "empty_file": ("poster", "poster file is empty"),
    "not_an_image": ("poster", "file bytes are not an image"),
    "unsupported_format": ("poster", "image format TensorFlow cannot decode (not JPEG/PNG/GIF/BMP)"),
    "truncated_image": ("poster", "image data ends early (truncated file)"),
    "huge_image": ("poster", "more pixels than data.max_image_pixels"),
    "missing_overview": ("overview", "overview missing or empty"),
    "non_utf8": ("overview", "overview bytes are not valid UTF-8"),
}
NOTES = {
    "format_mismatch": "image format differs from its file extension; decoded by content",
    "converted_to_rgb": "grayscale/palette/RGBA/16-bit/CMYK poster; decoded to 3-channel RGB",
    "title_not_utf8": "title bytes are not valid UTF-8; shown with replacement characters",
    "genre_spelling_merged": "genre names differing only in case or spaces; counted as one genre",
}

# Magic numbers of the formats tf.io.decode_image reads, and a few it does not.
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
_EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".gif": "gif", ".bmp": "bmp"}


@dataclasses.dataclass
class ValidationReport:
    """Counts per reason, with the first examples of each for the message."""

    total: int = 0
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    modalities: tuple = MODALITIES

    def add(self, reason: str, where: str, note: bool = False):
        (self.notes if note else self.counts)[reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)

    @property
    def ok(self) -> bool:
        return not self.counts

    def as_dict(self) -> dict:
        return {
            "total_rows": self.total,
            "checked_modalities": list(self.modalities),
            "problems": {r: {"count": n, "scope": REASONS[r][0], "meaning": REASONS[r][1],
                             "examples": self.examples[r]} for r, n in sorted(self.counts.items())},
            "converted": {r: {"count": n, "meaning": NOTES[r], "examples": self.examples[r]}
                          for r, n in sorted(self.notes.items())},
        }

    def format(self) -> str:
        lines = [f"{self.total} rows checked (modalities: {', '.join(self.modalities)})"]
        if not self.counts and not self.notes:
            lines.append("no problems found")
        for reason, n in sorted(self.counts.items()):
            scope, meaning = REASONS[reason]
            action = "row dropped" if scope == "row" else f"{scope} unusable"
            lines.append(f"  {reason:<24} {n:>6}  ({action}: {meaning}); e.g. "
                         + "; ".join(self.examples[reason][:3]))
        for reason, n in sorted(self.notes.items()):
            lines.append(f"  {reason:<24} {n:>6}  (kept: {NOTES[reason]}); e.g. "
                         + "; ".join(self.examples[reason][:3]))
        return "\n".join(lines)


def sniff_format(head: bytes):
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "heif"
    return None


def inspect_poster(path, max_pixels: int):
    """Checks one poster file.

    Returns:
        (problem, notes): ``problem`` is a reason code from REASONS or None;
        ``notes`` lists codes from NOTES for inputs that decode after conversion.
    """
    if not path or not os.path.isfile(path):
        return "missing_poster", []
    if os.path.getsize(path) == 0:
        return "empty_file", []
    with open(path, "rb") as f:
        head = f.read(16)
    fmt = sniff_format(head)
    if fmt is None:
        return "not_an_image", []
    if fmt not in ("jpeg", "png", "gif", "bmp"):
        return "unsupported_format", []
    notes = []
    expected = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if expected is not None and expected != fmt:
        notes.append("format_mismatch")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                return "huge_image", []
            if image.mode != "RGB":
                notes.append("converted_to_rgb")
            # A full decode is the only reliable test for truncation: headers of
            # a cut-off JPEG parse fine and TensorFlow fails only mid-epoch.
            image.load()
    except Image.DecompressionBombError:
        return "huge_image", []
    except OSError as err:
        return ("truncated_image" if "truncated" in str(err).lower() else "not_an_image"), []
    except (ValueError, SyntaxError):
        return "not_an_image", []
    return None, notes


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _check_rows(table, report, require_genres) -> list:
    """Row-level checks (loader problems, duplicate ids, splits, genres); fixes titles that are
    not UTF-8 in place. Returns the per-row drop flags."""
    drop = [False] * len(table)
    seen = set()
    titles = list(table["title"])
    for i, row in enumerate(table.itertuples(index=False)):
        if row.problem in REASONS and REASONS[row.problem][0] == "row":
            report.add(row.problem, f"{row.source} (id {row.id})")
            drop[i] = True
            continue
        if row.id in seen:
            report.add("duplicate_id", f"{row.source} (id {row.id})")
            drop[i] = True
            continue
        seen.add(row.id)
        if isinstance(row.title, str) and _has_surrogates(row.title):
            titles[i] = row.title.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            report.add("title_not_utf8", f"{row.source} (id {row.id})", note=True)
        if row.split not in SPLITS:
            report.add("unknown_split", f"{row.source} (split {row.split!r})")
            drop[i] = True
        elif not row.genres and require_genres:
            report.add("no_genres", f"{row.source} (id {row.id})")
            drop[i] = True
        elif any(_has_surrogates(g) for g in row.genres):
            report.add("non_utf8_genres", f"{row.source} (id {row.id})")
            drop[i] = True
    table["title"] = titles
    return drop


def _check_overviews(table, drop, report) -> list:
    """Per-row flags: the overview is usable text."""
    has_overview = [False] * len(table)
    for i, row in enumerate(table.itertuples(index=False)):
        if drop[i]:
            continue
        if not isinstance(row.overview, str):
            report.add("missing_overview", f"{row.source} (id {row.id})")
        elif _has_surrogates(row.overview):
            report.add("non_utf8", f"{row.source} (id {row.id})")
        else:
            has_overview[i] = True
    return has_overview


def checked_poster(path, max_pixels: int):
    """``inspect_poster``'s (problem, notes), decoded once per process for a file as it is now
    (path, inode, size and change time): every run of a benchmark, and every tiny run of the
    tests, validated the same posters again (2.3 s a run on the 3,980 posters of the large set,
    2 cores). A file that changes gets a new key and is inspected again."""
    try:
        stat = os.stat(path) if path else None
    except OSError:
        stat = None
    if stat is None:
        return inspect_poster(path, max_pixels)
    return _inspected(path, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, max_pixels)


@functools.lru_cache(maxsize=100_000)  # MM-IMDb has 25,959 posters; an entry is a few short strings
def _inspected(path, inode, size, mtime_ns, ctime_ns, max_pixels):
    problem, notes = inspect_poster(path, max_pixels)
    return problem, tuple(notes)


def _check_posters(table, drop, report, max_image_pixels, show_progress) -> list:
    """Per-row flags: the poster file opens as an image (checked in threads)."""
    has_poster = [False] * len(table)
    todo = []
    for i in range(len(table)):
        if drop[i]:
            continue
        if table.at[i, "problem"] == "poster_outside_dataset":
            report.add("poster_outside_dataset", f"{table.at[i, 'source']}")
        else:
            todo.append(i)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:
        results = pool.map(lambda i: checked_poster(table.at[i, "poster"], max_image_pixels), todo)
        if show_progress and len(todo) >= 500:
            results = progress(results, len(todo), "validating posters")
        for i, (problem, notes) in zip(todo, results):
            where = f"{table.at[i, 'source']} ({table.at[i, 'poster']})"
            if problem:
                report.add(problem, where)
            else:
                has_poster[i] = True
            for note in notes:
                report.add(note, where, note=True)
    return has_poster


def validate(table: pd.DataFrame, policy: str = "skip", modalities=MODALITIES,
             max_image_pixels: int = 40_000_000, show_progress: bool = True,
             require_genres: bool = True):
    """Checks every row; returns (clean table, ValidationReport).

    The clean table keeps rows without row-level problems and gains boolean
    columns ``has_poster`` and ``has_overview`` (False when that modality is
    unusable or was not checked).

    Args:
        table: the movie table from ``load_records``.
        policy: "skip" (count, warn once) or "strict" (raise DataError).
        modalities: which modalities to check; a posters-only dataset is
            validated with ("poster",) so its empty overviews are not errors.
        max_image_pixels: posters above this are rejected as huge_image.
        require_genres: drop rows without genres (False: unlabelled data to predict).
    """
    if policy not in ("skip", "strict"):
        raise ValueError(f"policy must be 'skip' or 'strict', got {policy!r}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected a subset of {list(MODALITIES)}")
    report = ValidationReport(total=len(table), modalities=tuple(modalities))
    table = table.reset_index(drop=True).copy()
    if "problem" not in table:  # tables built by hand rather than by records.load_records
        table["problem"] = None
    drop = _check_rows(table, report, require_genres)
    has_overview = (_check_overviews(table, drop, report) if "overview" in modalities
                    else [False] * len(table))
    has_poster = (_check_posters(table, drop, report, max_image_pixels, show_progress)
                  if "poster" in modalities else [False] * len(table))

    table["has_poster"] = has_poster
    table["has_overview"] = has_overview
    # An unusable modality is blanked, so nothing downstream can read it by mistake.
    table["poster"] = [p if ok else None for p, ok in zip(table["poster"], has_poster)]
    table["overview"] = [o if ok else None for o, ok in zip(table["overview"], has_overview)]
    # Drop rows that have none of the checked modalities left: nothing to learn from.
    usable = [not d and (p or o) for d, p, o in zip(drop, has_poster, has_overview)]
    if not report.ok:
        if policy == "strict":
            raise DataError("invalid dataset (bad_input: strict):\n" + report.format())
        warnings.warn("skipped bad input (bad_input: skip):\n" + report.format(), stacklevel=2)
    return table[usable].reset_index(drop=True), report


def select_modalities(table: pd.DataFrame, modalities, require_all: bool = True) -> pd.DataFrame:
    """Rows that have every modality in ``modalities`` (a model's inputs).

    With ``require_all=False`` (models that accept a missing modality) rows
    need at least one of them.
    """
    present = pd.concat([table[f"has_{m}"] for m in modalities], axis=1)
    mask = present.all(axis=1) if require_all else present.any(axis=1)
    return table[mask].reset_index(drop=True)
