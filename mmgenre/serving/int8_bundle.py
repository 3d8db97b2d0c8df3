"""`mmgenre export RUN --format int8`: a serving bundle on raw poster bytes and overview text
whose encoders are the int8 LiteRT graphs (``mmgenre.encoders.int8``).

    OUT/graphs/                 SavedModel: ``inputs`` {poster bytes, overview text} -> each
                                encoder's inputs (the run's tokenizer, packer and trim; its
                                poster decoding and scaling); ``head`` {"<encoder>": (batch,
                                dim), "overview" when TF-IDF is a feature} -> probabilities,
                                predicted (the run's thresholds); ``genres``
    OUT/encoders/<name>.tflite  the int8 encoders (copied from $MMGENRE_HOME/int8)
    OUT/genres.json             genres, thresholds, inputs, which encoder reads what
    OUT/mmgenre_int8.py         the loader (``mmgenre/serving/int8_loader.py``): no mmgenre needed

A run fitted at int8 (``model.params.precision: int8``) serves exactly the features it was
fitted on; a float32 run can be exported too (post-training quantization), said on stderr and
recorded in genres.json as ``fitted_at: float32``.
"""

from __future__ import annotations

import os
import shutil
import sys

import keras
import tensorflow as tf

from mmgenre.encoders.int8 import convert
from mmgenre.models import quantized
from mmgenre.models.probe import TFIDF, feature_kind
from mmgenre.serving.raw_inputs import decide, poster_pixels

LOADER = os.path.join(os.path.dirname(__file__), "int8_loader.py")
FAMILIES = ("linear_probe", "encoder_head")  # the families over frozen encoders' pooled features


def check_int8_exportable(run, run_dir: str):
    """Raises ValueError, before any model loads, for a run without pretrained encoders."""
    name = run.config.model.name
    if name not in FAMILIES:
        raise ValueError(f"{run_dir}: --format int8 takes runs over pretrained encoders "
                         f"({', '.join(FAMILIES)}); model {name!r} is not one")
    features = run.spec.params(run.config.model.params)["features"]
    if all(f == TFIDF for f in features):
        raise ValueError(f"{run_dir}: its features ({features}) hold no "
                         "pretrained encoder to quantize; export it as a SavedModel")


def write_int8_bundle(run, run_dir: str, staging: str) -> dict:
    """Writes the bundle into ``staging`` for a loaded ``run``; returns genres.json's facts."""
    params = run.spec.params(run.config.model.params)
    features = list(params["features"])
    encoders = [f for f in features if f != TFIDF]
    model = run.model.model if isinstance(run.model, quantized.Int8Pipeline) else run.model
    fitted_at = quantized.precision_of(params)
    if fitted_at != "int8":
        print(f"warning: {run_dir} was fitted on float32 features; the int8 bundle serves int8 "
              "ones (post-training quantization): its scores move by the quantization noise. "
              "Retrain with model.params.precision=int8 to fit on what is served",
              file=sys.stderr)
    prepare = {f: quantized.encoder_inputs(model, f) for f in encoders}
    head = quantized.head_on_features(model, features)
    pixels, decisions = poster_pixels(run), decide(run)

    def inputs(raw):
        out = {}
        for f in encoders:
            if feature_kind(f) == "text":
                token_ids, mask = prepare[f](raw["overview"])
                out[f"{f}_token_ids"], out[f"{f}_padding_mask"] = token_ids, mask
            else:
                out[f"{f}_pixels"] = prepare[f](pixels(raw["poster"]))
        return out

    archive = keras.export.ExportArchive()
    for tracked in (head, *prepare.values()):
        archive.track(tracked)
    archive.add_endpoint("inputs", inputs, input_signature=[
        {m: tf.TensorSpec([None], tf.string, name=m) for m in run.modalities}])
    head_signature = {name: tf.TensorSpec(t.shape, t.dtype, name=name)
                      for name, t in head.input.items()}
    archive.add_endpoint("head", lambda x: decisions(head(x)), input_signature=[head_signature])
    genres = tf.constant(run.vocab.genres)
    archive.add_endpoint("genres", lambda: {"genres": genres}, input_signature=[])
    archive.write_out(os.path.join(staging, "graphs"), verbose=False)
    os.makedirs(os.path.join(staging, "encoders"))
    for f in encoders:
        shutil.copyfile(convert(f, feature_kind(f)), os.path.join(staging, "encoders", f"{f}.tflite"))
    shutil.copyfile(LOADER, os.path.join(staging, "mmgenre_int8.py"))
    return {"inputs": list(run.modalities), "fitted_at": fitted_at,
            "encoders": {f: {"kind": feature_kind(f), "file": f"encoders/{f}.tflite"}
                         for f in encoders},
            "head_reads_overview": TFIDF in features,
            "loader": "mmgenre_int8.py: Bundle(folder).predict(posters=[bytes], overviews=[str])"}
