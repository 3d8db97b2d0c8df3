"""Synthetic movies with a planted, learnable genre signal, in the CSV layout.

Each genre owns one horizontal band of the poster (bright in its own colour
when the movie has that genre, dark otherwise) and a few keywords in the
overview, mixed with filler words and noise. With ``signal="split"`` the first
half of the genres is visible only on the poster and the second half only in
the text, so a fused model can beat either modality alone.

Output is deterministic per seed and has the same layout as the sample sets,
so every loader, pipeline and benchmark runs on it unchanged.
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Science Fiction")
# Draw probabilities: imbalanced like real catalogues (Drama and Comedy common).
GENRE_RATES = (0.25, 0.45, 0.5, 0.15, 0.25, 0.15)
KEYWORDS = {
    "Action": ("explosion", "chase", "mercenary", "heist"),
    "Comedy": ("hilarious", "prank", "misadventure", "awkward"),
    "Drama": ("grief", "family", "struggle", "redemption"),
    "Horror": ("haunted", "demon", "blood", "curse"),
    "Romance": ("love", "wedding", "kiss", "heart"),
    "Science Fiction": ("spaceship", "alien", "robot", "galaxy"),
}
FILLER = ("the", "a", "city", "man", "woman", "story", "life", "world", "night", "years",
          "finds", "must", "after", "young", "old", "town", "secret", "journey", "friend",
          "home", "war", "time", "past", "new", "team", "small", "two", "lost", "day")
COLOURS = np.array([(230, 40, 40), (240, 220, 30), (40, 90, 230), (120, 20, 120),
                    (250, 120, 180), (30, 220, 200)], np.float32)


def _poster(rng, labels, visible, height, width):
    n = len(GENRES)
    image = rng.normal(60, 20, size=(height, width, 3))
    band = height // n
    for g in range(n):
        if labels[g] and visible[g]:
            image[g * band:(g + 1) * band] = COLOURS[g] + rng.normal(0, 25, size=(band, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _overview(rng, labels, visible):
    words = list(rng.choice(FILLER, size=rng.integers(12, 30)))
    for g, name in enumerate(GENRES):
        if labels[g] and visible[g]:
            words += list(rng.choice(KEYWORDS[name], size=2))
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def make_synthetic(out_dir: str, n: int, seed: int = 0, signal: str = "both",
                   image_size=(48, 32), splits=(0.7, 0.15, 0.15)) -> str:
    """Writes ``out_dir/movies.csv`` and ``out_dir/posters/*.jpg``; returns out_dir.

    Args:
        out_dir: folder to create (existing files are overwritten).
        n: number of movies.
        seed: controls every random draw; the same seed gives the same files.
        signal: "both" (every genre visible in poster and text) or "split"
            (first half poster-only, second half text-only).
        image_size: (height, width) of the posters written.
        splits: train/dev/test fractions.
    """
    if signal not in ("both", "split"):
        raise ValueError(f"signal must be 'both' or 'split', got {signal!r}")
    if n < 3:
        raise ValueError(f"n must be at least 3 (one movie per split), got {n}")
    rng = np.random.default_rng(seed)
    half = len(GENRES) // 2
    poster_visible = [signal == "both" or g < half for g in range(len(GENRES))]
    text_visible = [signal == "both" or g >= half for g in range(len(GENRES))]
    os.makedirs(os.path.join(out_dir, "posters"), exist_ok=True)
    bounds = np.cumsum(splits) * n
    height, width = image_size
    with open(os.path.join(out_dir, "movies.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "title", "year", "genres", "overview", "poster", "split"])
        for i in range(n):
            labels = rng.random(len(GENRES)) < np.array(GENRE_RATES)
            if not labels.any():
                labels[rng.integers(len(GENRES))] = True
            movie_id = f"syn{seed:03d}{i:07d}"
            poster = os.path.join("posters", f"{movie_id}.jpg")
            Image.fromarray(_poster(rng, labels, poster_visible, height, width)).save(
                os.path.join(out_dir, poster), quality=90)
            split = "train" if i < bounds[0] else "dev" if i < bounds[1] else "test"
            genres = "|".join(g for g, on in zip(GENRES, labels) if on)
            writer.writerow([movie_id, f"Synthetic movie {i}", 2000 + i % 25, genres,
                             _overview(rng, labels, text_visible), poster, split])
    return out_dir
