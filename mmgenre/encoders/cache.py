"""Frozen-encoder embeddings, computed once per encoder and input set, cached on disk.

The key covers the encoder's identity (its prepared package hash, or its
folder's weight files' sizes and times), and every input: the texts
themselves, or each poster file's path, size and modification time. A changed
overview or poster therefore recomputes; an unchanged one never does. Files are
written atomically and a file that does not load with the expected shape is
recomputed, naming it.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from mmgenre import runs
from mmgenre.encoders import sources
from mmgenre.progress import timed


def encoder_identity(name: str) -> str:
    folder = sources.resolve(name, sources.KNOWN[name].kind) if name in sources.KNOWN else name
    prepared = runs.read_json(os.path.join(folder, sources.PREPARED)) if os.path.isdir(folder) else None
    if prepared:
        return prepared.get("sha256", "")
    if os.path.isdir(folder):
        return json.dumps(sorted((f, os.path.getsize(os.path.join(folder, f)),
                                  os.path.getmtime(os.path.join(folder, f)))
                                 for f in os.listdir(folder)))
    return folder


_LOADED: dict = {}  # (name, kind, identity) -> (what load_*_encoder returned, traced forward)
KEEP_LOADED = 4  # encoders a process keeps (all-mpnet-base-v2 is the largest, 438 MB)


def loaded_encoder(name: str, kind: str, forward):
    """(load_text_encoder / load_image_encoder output, tf.function of ``forward(backbone)``),
    loaded and traced once per encoder in a process: embedding train, dev and test, and every
    probe of a benchmark, reuse them (tracing EfficientNet-Lite0 took about 2 s a call, loading
    all-mpnet-base-v2 several). Only the embedders use them; models build their own."""
    import tensorflow as tf

    key = (name, kind, encoder_identity(name))
    if key not in _LOADED:
        if kind == "text":
            from mmgenre.encoders.text import load_text_encoder as load
        else:
            from mmgenre.encoders.image import load_image_encoder as load
        while len(_LOADED) >= KEEP_LOADED:
            _LOADED.pop(next(iter(_LOADED)))
        loaded = load(name)
        _LOADED[key] = (loaded, tf.function(forward(loaded[0]), reduce_retracing=True))
    return _LOADED[key]


def _key(name: str, kind: str, inputs) -> str:
    digest = hashlib.sha256(json.dumps([name, kind, encoder_identity(name)]).encode())
    for item in inputs:
        if kind == "image":
            stat = os.stat(item)
            item = f"{os.path.abspath(item)}|{stat.st_size}|{stat.st_mtime_ns}"
        digest.update(item.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:20]


def cached_embeddings(name: str, kind: str, inputs, show_progress: bool = True) -> np.ndarray:
    """(n, d) embeddings of ``inputs`` (texts for kind "text", poster paths for "image")."""
    inputs = list(inputs)
    path = os.path.join(sources.home(), "embeddings", f"{os.path.basename(os.path.normpath(name))}-"
                        f"{kind}-{_key(name, kind, inputs)}.npy")
    def compute():
        with timed(f"embed {len(inputs):,} {'overviews' if kind == 'text' else 'posters'} "
                   f"with {os.path.basename(os.path.normpath(name))}"):
            if kind == "text":
                from mmgenre.encoders.text import embed_texts

                return embed_texts(name, inputs, show_progress=show_progress)
            from mmgenre.encoders.image import embed_posters

            return embed_posters(name, inputs, show_progress=show_progress)

    return runs.cached_array(path, compute, rows=len(inputs))
