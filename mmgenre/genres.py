"""Other catalogues' genre names onto a trained run's vocabulary.

Catalogues spell the same genre differently: IMDb and MM-IMDb say "Sci-Fi",
"Film-Noir", "Biography"; MovieLens "Children", "Sci-Fi", "(no genres listed)";
TMDB "Science Fiction", "TV Movie". A run scored on another catalogue's data
maps each spelling in the data onto the run's genres, in this order:

1. the user's ``--genre-map`` (``A=B`` pairs or a YAML/JSON file; ``A=`` ignores A);
2. the same name up to case, spaces, hyphens and punctuation ("sci-fi" = "Sci Fi");
3. ``ALIASES``: one group per genre that catalogues name differently, used only
   when the run does not know the spelling itself (a run that learned both
   "Music" and "Musical", as IMDb lists them, keeps them apart).

Anything else is a genre the run never learned: ignored and counted. The
mapping used is recorded in what ``mmgenre evaluate`` writes.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re

# Spellings of one genre across catalogues (IMDb / MM-IMDb, MovieLens 25M, TMDB). Only real
# synonyms: "Biography", "Sport" or "Short" have no counterpart in TMDB's 19 names, so they
# stay unseen unless the user maps them.
ALIASES = (
    ("Science Fiction", "Sci-Fi", "SF"),                 # TMDB / IMDb, MovieLens
    ("Family", "Children", "Children's", "Kids"),        # TMDB / MovieLens
    ("Music", "Musical"),                                # TMDB / MovieLens, IMDb (IMDb has both)
    ("TV Movie", "Made for TV", "TV Film"),              # TMDB
    ("Film-Noir", "Film Noir", "Noir"),                  # IMDb, MovieLens
    ("Sport", "Sports"),                                 # IMDb
    ("Animation", "Animated"),
    ("Documentary", "Documentaries"),
)
# Labels that say "no genre": a row carrying only this is unlabelled, not a genre to ignore.
NOT_GENRES = ("(no genres listed)",)


def key(name: str) -> str:
    """What spellings of one genre share: letters and digits, case folded ("Sci-Fi" -> "scifi")."""
    return re.sub(r"[\W_]+", "", str(name)).casefold()


_ALIAS_GROUP = {key(name): i for i, group in enumerate(ALIASES) for name in group}


class GenreMapError(ValueError):
    """A --genre-map entry that cannot apply (malformed, or naming no genre of the run)."""


def parse_genre_map(entries) -> dict:
    """``--genre-map`` values -> {data spelling: run genre or "" (ignore)}.

    Each entry is ``A=B`` or the path of a YAML/JSON file holding such a mapping.
    """
    out = {}
    for entry in entries or ():
        if "=" not in entry and os.path.isfile(entry):
            import yaml

            with open(entry, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
            if not isinstance(loaded, dict):
                raise GenreMapError(f"{entry}: a genre map file holds a mapping "
                                    f"{{data genre: run genre}}, got {type(loaded).__name__}")
            out.update({str(a): "" if b is None else str(b) for a, b in loaded.items()})
        elif "=" in entry:
            a, b = entry.split("=", 1)
            if not a.strip():
                raise GenreMapError(f"--genre-map {entry!r}: the data genre before '=' is empty")
            out[a.strip()] = b.strip()
        else:
            raise GenreMapError(f"--genre-map {entry!r} is neither A=B nor an existing file")
    return out


@dataclasses.dataclass
class GenreMapping:
    """How one dataset's genre spellings met a run's vocabulary.

    renamed: {data spelling: run genre} for spellings not identical to the run's.
    ignored: {data spelling: movies} the run never learned (or the map ignores).
    shared: run genres that some movie of the data carries, in the run's order.
    """

    renamed: dict
    ignored: dict
    shared: list

    def as_dict(self) -> dict:
        return {"renamed": dict(self.renamed), "ignored": dict(self.ignored),
                "shared": list(self.shared)}


def resolve(spelling: str, vocabulary, overrides: dict) -> str | None:
    """The run genre ``spelling`` means, or None (never learned)."""
    by_key = {key(g): g for g in vocabulary}
    override = overrides.get(spelling, overrides.get(next(
        (a for a in overrides if key(a) == key(spelling)), None)))
    if override is not None:
        return by_key.get(key(override)) if override else None
    if key(spelling) in by_key:
        return by_key[key(spelling)]
    group = _ALIAS_GROUP.get(key(spelling))
    if group is None:
        return None
    matches = [g for g in vocabulary if _ALIAS_GROUP.get(key(g)) == group]
    return matches[0] if len(matches) == 1 else None


def map_onto(table, vocabulary, overrides: dict | None = None):
    """(table with every genre list in the run's spellings, GenreMapping).

    Args:
        table: movie table with a ``genres`` column of lists of str.
        vocabulary: the run's genres.
        overrides: ``parse_genre_map``'s output.

    Raises:
        GenreMapError: an override maps onto a genre the run does not have.
    """
    overrides = dict(overrides or {})
    known = {key(g) for g in vocabulary}
    for a, b in overrides.items():
        if b and key(b) not in known:
            raise GenreMapError(f"--genre-map {a}={b}: the run has no genre {b!r}; "
                                f"its genres: {list(vocabulary)}")
    cache, renamed, ignored, seen = {}, {}, collections.Counter(), set()
    not_genres = {key(g) for g in NOT_GENRES}
    mapped_lists = []
    for genres in table["genres"]:
        mapped = []
        for g in genres:
            if key(g) in not_genres:
                continue
            if g not in cache:
                cache[g] = resolve(g, vocabulary, overrides)
            target = cache[g]
            if target is None:
                ignored[g] += 1
                continue
            if target != g:
                renamed[g] = target
            mapped.append(target)
            seen.add(target)
        mapped_lists.append(list(dict.fromkeys(mapped)))
    table = table.copy()
    table["genres"] = mapped_lists
    shared = [g for g in vocabulary if g in seen]
    return table, GenreMapping(dict(sorted(renamed.items())), dict(ignored.most_common()), shared)
