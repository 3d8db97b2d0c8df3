"""int8 encoders: each frozen encoder converted once to LiteRT (text: dynamic-range int8).

Why this route: on this machine (2 CPU cores) all-mpnet-base-v2 converted by the TensorFlow
Lite converter with dynamic-range quantization (int8 weights, float activations, XNNPack)
embeds one 40-token overview in 19.5 ms against 94 ms for the float32 Keras graph, cosine to
the float32 embedding 0.998; the file is 111 MB instead of 438 MB. Keras 3's own
``model.quantize("int8")`` ran 4x slower than float32 on the TensorFlow backend (issue 28).

Image encoders are converted without quantization: for EfficientNet-Lite0's convolutions
dynamic-range int8 was the slow choice (one poster 16.3 ms, against 5.5 ms for the same graph
in float32 under LiteRT's XNNPack and 21 ms in Keras; cosine 0.9975 against 1.0000). Full
integer int8 ran in 2.9 ms (cosine 0.996) but needs calibration posters, so a data set, in
what is now a cache per encoder; the 2.6 ms it saves are small beside MPNet's 27 ms.

The converted graph starts where the string and image-decoding ops end, so tokenization and
poster decoding stay outside it (string ops do not convert):

    text:  token_ids (batch, seq) int32, padding_mask (batch, seq) int32
           -> embedding (batch, hidden): mean over real tokens, unit length
    image: pixels (batch, size, size, 3) float32, already in the checkpoint's input scale
           -> embedding (batch, channels): the feature map averaged over space

Both dimensions of the text inputs are dynamic, so batches stay padded to their own longest
overview. Converted files live under ``$MMGENRE_HOME/int8/NAME/`` named by the float
encoder's identity, with a record of their size and SHA-256 written last; the SHA-256 is
checked at the first load in a process and a damaged file is converted again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile

import numpy as np

from mmgenre import files, runs
from mmgenre.encoders import sources
from mmgenre.encoders.loading import backbone_inputs, encoder_identity, load_image_encoder, load_text_encoder
from mmgenre.progress import timed

PRECISIONS = ("float32", "int8")
# What "int8" converts each kind of encoder to (the docstring says why images stay float).
QUANTIZATION = {"text": "dynamic range (int8 weights)", "image": "none (float32 LiteRT, XNNPack)"}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def int8_file(name: str, kind: str) -> str:
    """Where the int8 conversion of ``kind`` encoder ``name`` (a known name or a folder) lives:
    named by the float encoder's identity, the converter's (TensorFlow's) version and the
    quantization."""
    made_by = (f"{encoder_identity(name)}|tensorflow {importlib.metadata.version('tensorflow')}|"
               f"{QUANTIZATION[kind]}")
    tag = hashlib.sha256(made_by.encode()).hexdigest()[:16]
    return os.path.join(sources.home(), "int8", os.path.basename(os.path.normpath(name)),
                        f"{tag}.tflite")


def _float_forward(name: str, kind: str):
    """(tf.function of the float32 encoder on the int8 graph's inputs, the backbone)."""
    import tensorflow as tf

    if kind == "text":
        backbone, _ = load_text_encoder(name)
        spec = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                tf.TensorSpec([None, None], tf.int32, name="padding_mask")]

        @tf.function(input_signature=spec)
        def forward(token_ids, padding_mask):
            sequence = backbone(backbone_inputs(backbone, token_ids, padding_mask),
                                training=False)["sequence_output"]
            mask = tf.expand_dims(tf.cast(padding_mask, sequence.dtype), -1)
            pooled = tf.reduce_sum(sequence * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
            return {"embedding": tf.math.l2_normalize(pooled, axis=1, epsilon=1e-24)}
        return forward, backbone
    backbone, settings = load_image_encoder(name)
    size = int(settings["image_size"])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")])
    def forward(pixels):
        return {"embedding": tf.reduce_mean(backbone(pixels, training=False), axis=(1, 2))}
    return forward, backbone


def convert(name: str, kind: str) -> str:
    """The path of ``name``'s int8 LiteRT file, converted now when it is not there or damaged."""
    path = int8_file(name, kind)
    with runs.waiting_lock(os.path.join(os.path.dirname(path), ".lock")):
        if _problem(path) is None:
            return path
        with timed(f"convert {os.path.basename(os.path.normpath(name))} to int8"):
            flat = _convert(name, kind)
        with files.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(flat)
        files.write_json(path + ".json", {"encoder": name, "kind": kind, "size": os.path.getsize(path),
                                         "sha256": files.file_sha256(path),
                                         "quantization": QUANTIZATION[kind]})
    return path


def _convert(name: str, kind: str) -> bytes:
    import keras
    import tensorflow as tf

    forward, backbone = _float_forward(name, kind)
    archive = keras.export.ExportArchive()  # tracks the Keras 3 variables for the converter
    archive.track(backbone)
    archive.add_endpoint("serve", forward)
    staging = tempfile.mkdtemp(prefix="mmgenre-int8-")
    try:
        archive.write_out(staging, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging)
        if kind == "text":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights
        return converter.convert()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _problem(path: str) -> str | None:
    """Why the int8 file at ``path`` cannot be used (its record, size or SHA-256), or None."""
    record = files.read_json(path + ".json")
    if not os.path.isfile(path) or not isinstance(record, dict):
        return "not converted"
    if os.path.getsize(path) != record.get("size"):
        return f"has {os.path.getsize(path):,} bytes, {record.get('size')} recorded"
    if files.file_sha256(path) != record.get("sha256"):
        return "does not match its recorded SHA-256"
    return None


_RUNNERS: dict = {}  # int8 file -> LiteRT signature runner (one per process)


def int8_encoder(name: str, kind: str):
    """A callable: text (token_ids, padding_mask) or image (pixels) -> (batch, dim) float32
    embeddings from ``name``'s int8 graph (converted on first use), kept loaded."""
    path = int8_file(name, kind)
    if path not in _RUNNERS:
        problem = _problem(path)
        if problem not in (None, "not converted"):
            print(f"warning: {path} {problem}; converting it again", file=sys.stderr)
        convert(name, kind)
        _RUNNERS[path] = load_runner(path)
    runner = _RUNNERS[path]
    if kind == "image":  # batches embed each poster as it would alone (checked to 0.0)
        return lambda pixels: runner(pixels=np.asarray(pixels, np.float32))["embedding"]

    def embed_text(token_ids, padding_mask):
        # One overview at a time, cut to its own length: the activations are quantized per
        # tensor, so padding and neighbours in a batch moved MPNet embeddings by up to 6e-3
        # (batch 32 against 1), and one at a time was faster too (30 against 50 ms an
        # overview on 2 cores). Padding is at the end (StartEndPacker).
        token_ids, padding_mask = np.asarray(token_ids, np.int32), np.asarray(padding_mask, np.int32)
        lengths = padding_mask.sum(axis=1)
        return np.concatenate([
            runner(token_ids=ids[None, :n], padding_mask=mask[None, :n])["embedding"]
            for ids, mask, n in zip(token_ids, padding_mask, lengths)])
    return embed_text


def int8_sha256(name: str, kind: str) -> str:
    """The SHA-256 of ``name``'s int8 file (converted now when it is not there)."""
    return files.read_json(convert(name, kind) + ".json")["sha256"]


def load_runner(path: str, threads: int | None = None):
    """The default signature runner of the LiteRT file ``path`` (XNNPack, one thread per core)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads or os.cpu_count() or 1)
    return interpreter.get_signature_runner()
