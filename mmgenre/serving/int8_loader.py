"""Serve an mmgenre int8 bundle (`mmgenre export RUN --format int8`) without mmgenre.

This file is copied into every bundle as ``mmgenre_int8.py``; a plain Python process with
tensorflow, ai-edge-litert (and tensorflow-text, whose ops the MiniLM and MPNet tokenizers
use) loads the bundle with it:

    import sys; sys.path.insert(0, "exports/genre-int8")
    from mmgenre_int8 import Bundle
    bundle = Bundle("exports/genre-int8")
    probabilities, predicted = bundle.predict(posters=[open("p.jpg", "rb").read()],
                                              overviews=["A detective..."])
    bundle.genres  # the column names

The bundle: ``graphs/`` (a SavedModel: ``inputs`` decodes posters and tokenizes overviews
with the run's own layers, ``head`` maps the encoders' features, and the overview for
TF-IDF, to ``probabilities`` and ``predicted``), ``encoders/<name>.tflite`` (the int8 LiteRT
encoders), ``genres.json`` (genres, thresholds, which encoder reads what). Text encoders
run one overview at a time at its own length, as mmgenre embedded the run's training
movies: the int8 activations are quantized per tensor, so batching would move the scores.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

try:
    import tensorflow_text  # noqa: F401  registers the tokenizers' ops before loading
except ImportError:  # a bundle without a keras-hub tokenizer does not need it
    pass
from ai_edge_litert.interpreter import Interpreter


class Bundle:
    """An int8 bundle loaded from ``folder``; ``threads`` per encoder (default: every core)."""

    def __init__(self, folder: str, threads: int | None = None):
        with open(os.path.join(folder, "genres.json"), encoding="utf-8") as f:
            self.info = json.load(f)
        self.genres = self.info["genres"]
        self.graphs = tf.saved_model.load(os.path.join(folder, "graphs"))
        self.encoders = {
            name: Interpreter(model_path=os.path.join(folder, spec["file"]),
                              num_threads=threads or os.cpu_count() or 1).get_signature_runner()
            for name, spec in self.info["encoders"].items()}

    def predict(self, posters=None, overviews=None):
        """(probabilities (n, genres) float32, predicted (n, genres) bool) for n movies.

        posters: encoded image bytes (JPEG, PNG, GIF, BMP) per movie; overviews: str per
        movie. Give the inputs ``genres.json`` lists; for a model reading both, an empty
        value (b"" or "") means that input is missing.
        """
        given = {"poster": posters, "overview": overviews}
        raw = {}
        for name in self.info["inputs"]:
            if given[name] is None:
                raise ValueError(f"this bundle needs {name}s (inputs: {self.info['inputs']})")
            raw[name] = tf.constant(list(given[name]), tf.string)
        prepared = self.graphs.inputs(raw)
        features = {}
        for name, spec in self.info["encoders"].items():
            run = self.encoders[name]
            if spec["kind"] == "image":
                features[name] = run(pixels=prepared[f"{name}_pixels"].numpy())["embedding"]
                continue
            ids = prepared[f"{name}_token_ids"].numpy().astype(np.int32)
            mask = prepared[f"{name}_padding_mask"].numpy().astype(np.int32)
            features[name] = np.concatenate([
                run(token_ids=i[None, :n], padding_mask=m[None, :n])["embedding"]
                for i, m, n in zip(ids, mask, mask.sum(axis=1))])
        if self.info["head_reads_overview"]:
            features["overview"] = raw["overview"]
        out = self.graphs.head({k: tf.convert_to_tensor(v) for k, v in features.items()})
        return out["probabilities"].numpy(), out["predicted"].numpy()
