"""Genre vocabulary (from the train split only) and targets for both tasks."""

from __future__ import annotations

import collections
import dataclasses
import json

import numpy as np
import pandas as pd


def genre_key(name: str) -> str:
    """What two spellings of one genre share: trimmed, inner spaces collapsed, case folded."""
    return " ".join(name.split()).casefold()


def normalise_genres(table: pd.DataFrame, known=()) -> tuple:
    """One spelling per genre: names equal up to case and spaces are merged.

    Args:
        table: movie table with a ``genres`` column of lists of str.
        known: spellings that win (a trained run's vocabulary); otherwise the
            most frequent spelling wins, ties to the first seen.

    Returns:
        (table with normalised genre lists, {kept spelling: [merged spellings]}).
    """
    spellings = collections.defaultdict(collections.Counter)
    for genres in table["genres"]:
        for g in genres:
            spellings[genre_key(g)][g] += 1
    preferred = {genre_key(g): g for g in known}
    canonical = {}
    for key, counts in spellings.items():
        tidy = collections.Counter()
        for g, n in counts.items():
            tidy[" ".join(g.split())] += n
        canonical[key] = preferred.get(key) or tidy.most_common(1)[0][0]
    merged = {canonical[k]: sorted(c) for k, c in spellings.items()
              if set(c) != {canonical[k]}}
    table = table.copy()
    # dict.fromkeys keeps order and drops a genre listed twice under two spellings.
    table["genres"] = [list(dict.fromkeys(canonical[genre_key(g)] for g in genres))
                       for genres in table["genres"]]
    return table, merged


@dataclasses.dataclass
class GenreVocabulary:
    """Genres kept for training, in a fixed order, and those dropped with why.

    genres: kept genre names, most frequent first (ties by name).
    train_counts: train-split count of every genre seen in train.
    dropped: {genre: reason} for genres below ``min_count`` in train.
    train_movies: train movies counted (None in vocabularies saved before it was recorded).
    """

    genres: list
    train_counts: dict
    dropped: dict
    min_count: int
    train_movies: int | None = None  # train rows it was counted on (the prior's denominator)

    @classmethod
    def from_train(cls, table: pd.DataFrame, min_count: int = 10,
                   top: int | None = None) -> "GenreVocabulary":
        """Genres with ``min_count`` train movies, at most the ``top`` most frequent."""
        train = table[table["split"] == "train"]
        counts = collections.Counter(g for genres in train["genres"] for g in genres)
        ordered = sorted(counts, key=lambda g: (-counts[g], g))
        kept = [g for g in ordered if counts[g] >= min_count][:top]
        dropped = {g: f"{counts[g]} train example(s) < min_genre_count {min_count}"
                   for g in ordered if counts[g] < min_count}
        dropped.update({g: f"not among the {top} most frequent train genres"
                        for g in ordered if counts[g] >= min_count and g not in kept})
        if not kept:
            raise ValueError(
                f"no genre has at least {min_count} train examples "
                f"(train counts: {dict(counts)}); lower data.min_genre_count"
            )
        return cls(kept, dict(counts), dropped, min_count, len(train))

    def __len__(self):
        return len(self.genres)

    def multi_hot(self, genre_lists) -> np.ndarray:
        """(n_movies, n_genres) float32 0/1 targets; unknown genres are ignored."""
        index = {g: i for i, g in enumerate(self.genres)}
        out = np.zeros((len(genre_lists), len(self.genres)), np.float32)
        for row, genres in enumerate(genre_lists):
            for g in genres:
                if g in index:
                    out[row, index[g]] = 1.0
        return out

    def single_label(self, genre_lists, rule: str = "rarest") -> np.ndarray:
        """One class index per movie, -1 when none of its genres is kept.

        rule "rarest": the movie's kept genre with the fewest train examples, so
        a Horror comedy counts as Horror and minority genres keep their movies;
        rule "first": the first kept genre in the order listed.
        """
        index = {g: i for i, g in enumerate(self.genres)}
        out = np.full(len(genre_lists), -1, np.int64)
        for row, genres in enumerate(genre_lists):
            kept = [g for g in genres if g in index]
            if not kept:
                continue
            pick = kept[0] if rule == "first" else min(kept, key=lambda g: (self.train_counts[g], g))
            out[row] = index[pick]
        return out

    def unseen(self, table: pd.DataFrame) -> collections.Counter:
        """Genres in non-train rows that are not in the vocabulary, with counts."""
        known = set(self.genres)
        return collections.Counter(
            g for genres in table["genres"] for g in genres if g not in known
        )

    def to_json(self, path: str):
        from mmgenre.files import write_json

        write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path: str) -> "GenreVocabulary":
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))
