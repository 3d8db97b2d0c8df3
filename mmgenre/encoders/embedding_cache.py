"""Frozen-encoder embeddings, computed once per encoder and input set, cached on disk.

(Loaded encoders in memory are ``mmgenre.encoders.loading``'s.)

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

from mmgenre import files
from mmgenre.encoders import sources
from mmgenre.encoders.image import embed_posters
from mmgenre.encoders.int8 import int8_file
from mmgenre.encoders.loading import encoder_identity
from mmgenre.encoders.text import embed_texts
from mmgenre.progress import timed


def _key(name: str, kind: str, inputs, precision: str) -> str:
    # float32 keys are what they were before int8 existed, so those caches stay valid.
    identity = [name, kind, encoder_identity(name)]
    if precision != "float32":
        identity += [precision, os.path.basename(int8_file(name, kind))]
    digest = hashlib.sha256(json.dumps(identity).encode())
    for item in inputs:
        if kind == "image":
            stat = os.stat(item)
            item = f"{os.path.abspath(item)}|{stat.st_size}|{stat.st_mtime_ns}"
        digest.update(item.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:20]


def cached_embeddings(name: str, kind: str, inputs, show_progress: bool = True,
                      precision: str = "float32") -> np.ndarray:
    """(n, d) embeddings of ``inputs`` (texts for kind "text", poster paths for "image") by
    the encoder at ``precision`` ("float32", or "int8": ``mmgenre.encoders.int8``)."""
    inputs = list(inputs)
    path = os.path.join(sources.home(), "embeddings", f"{os.path.basename(os.path.normpath(name))}-"
                        f"{kind}-{_key(name, kind, inputs, precision)}.npy")
    def compute():
        with timed(f"embed {len(inputs):,} {'overviews' if kind == 'text' else 'posters'} "
                   f"with {os.path.basename(os.path.normpath(name))} ({precision})"):
            if kind == "text":
                return embed_texts(name, inputs, show_progress=show_progress, precision=precision)
            return embed_posters(name, inputs, show_progress=show_progress, precision=precision)

    return files.cached_array(path, compute, rows=len(inputs))
