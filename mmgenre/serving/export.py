"""Export a run for serving on raw inputs: a SavedModel (TensorFlow Serving) or TFLite.

The serving signature takes what a client has, batched strings: ``poster``
(encoded JPEG/PNG/GIF/BMP bytes) and ``overview`` (text), only the inputs the
model reads; for fused models an empty string means "missing" (the zero poster
or empty overview the model was trained to stand in for). Inside the graph the
poster is decoded, resized and scaled by the same functions training used
(``pipeline.decode_poster``, ``to_unit_range``) and the overview vectorised by
the run's own vocabulary, so outputs match ``mmgenre predict``. It returns
``probabilities`` (batch, genres) and ``predicted`` (batch, genres) booleans at
the run's dev-chosen thresholds; the genre names are the ``genres`` endpoint and
``genres.json`` beside the model.

TFLite has no kernel for the antialiased resize inside a decode loop (the
converter stops at ScaleAndTranslate), so ``--format tflite`` converts the model
on its tensor inputs instead (``poster``: (batch, height, width, 3) float32 in
[0, 1], resized as ``genres.json`` says; ``overview``: token ids), leaving
decoding to the app as mobile apps do; models whose ops TFLite lacks fail with
an error naming the op.
"""

from __future__ import annotations

import os
import shutil
import sys

import tensorflow as tf

from mmgenre import files, runs
from mmgenre.config import EXPORT_FORMATS
from mmgenre.data.prepare import takes_raw_text
from mmgenre.inference import open_run, with_model
from mmgenre.models.quantized import precision_of
from mmgenre.serving.int8_bundle import check_int8_exportable, write_int8_bundle
from mmgenre.serving.raw_inputs import decide, poster_pixels

FORMATS = EXPORT_FORMATS  # one list: the CLI offers these without importing TensorFlow


def serving_function(run):
    """(fn, input signature) of the raw-input endpoint for a loaded run."""
    model, modalities = run.model, tuple(run.modalities)
    raw_text = takes_raw_text(model)
    decisions = decide(run)

    pixels = poster_pixels(run)

    def serve(**raw):
        inputs = {}
        if "poster" in modalities:
            inputs["poster"] = pixels(raw["poster"])
        if "overview" in modalities:
            inputs["overview"] = raw["overview"] if raw_text else run.vectorizer(raw["overview"])
        return decisions(model(inputs, training=False))

    signature = {m: tf.TensorSpec([None], tf.string, name=m) for m in modalities}
    return serve, signature


def tflite_flatbuffer(saved_model: str):
    """(flatbuffer bytes, needs_flex): TFLite builtin ops when the model allows it, else with
    select TensorFlow ops (the LSTM's TensorList ops, for one), which need the Flex delegate."""
    def convert(ops):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serve"])
        converter.target_spec.supported_ops = ops
        return converter.convert()

    try:
        return convert([tf.lite.OpsSet.TFLITE_BUILTINS]), False
    except Exception:  # noqa: BLE001  not convertible to builtins alone: try with select ops
        return convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]), True


def _replace_with_tflite(run, run_dir, staging, saved_model) -> bool:
    """Converts the SavedModel in ``staging`` to model.tflite in its place; returns whether the
    file needs the Flex delegate (said on stderr). Not convertible: staging removed, ValueError."""
    try:
        flat, needs_flex = tflite_flatbuffer(saved_model)
    except Exception as err:  # the converter raises many types; all mean "not convertible"
        shutil.rmtree(staging, ignore_errors=True)
        first = str(err).strip().splitlines()[0][:300]
        raise ValueError(f"{run_dir}: model {run.config.model.name!r} cannot be converted to "
                         f"TFLite ({first}); export --format saved_model instead") from None
    if needs_flex:
        print(f"warning: {run.config.model.name!r} needs TensorFlow ops outside TFLite's "
              "builtins: the .tflite file runs only with the Flex delegate "
              "(tensorflow-lite-select-tf-ops on mobile; the full tensorflow pip package "
              "in Python); genres.json records needs_flex_delegate", file=sys.stderr)
    shutil.rmtree(saved_model)
    os.makedirs(staging, exist_ok=True)
    with open(os.path.join(staging, "model.tflite"), "wb") as f:
        f.write(flat)
    return needs_flex


def _write_float(run, run_dir, staging, fmt) -> dict:
    """Writes a SavedModel (or model.tflite) of the run's Keras graph into ``staging``;
    returns genres.json's facts of the format."""
    import keras

    serve, signature = serving_function(run)
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    if fmt == "tflite":
        tensors = {name: tf.TensorSpec(t.shape, t.dtype, name=name)
                   for name, t in run.model.input.items()}
        archive.add_endpoint("serve", lambda inputs: {"probabilities": run.model(inputs)},
                             input_signature=[tensors])
    else:
        if run.vectorizer is not None:
            run.vectorizer(tf.constant(["build"]))  # a layer must be built before it is tracked
            archive.track(run.vectorizer)
        archive.add_endpoint("serve", lambda inputs: serve(**inputs), input_signature=[signature])
        genres = tf.constant(run.vocab.genres)
        archive.add_endpoint("genres", lambda: {"genres": genres}, input_signature=[])
    saved_model = os.path.join(staging, "saved_model") if fmt == "tflite" else staging
    archive.write_out(saved_model, verbose=False)
    if fmt != "tflite":
        return {"inputs": list(signature)}
    return {"inputs": list(signature),
            "needs_flex_delegate": _replace_with_tflite(run, run_dir, staging, saved_model)}


def export_run(run_dir: str, out_dir: str, fmt: str = "saved_model",
               allow_external_code: bool = False, overwrite: bool = False) -> str:
    """Writes the export to ``out_dir`` (replaced whole only when complete); returns it.

    ``out_dir`` must be new, empty or an earlier export (``runs.OUTPUT_MARKER``)
    unless ``overwrite``; the run must be finished (its completion record), so
    the export carries its dev-chosen thresholds. Staging folders of killed
    exports to the same place are removed first.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    runs.check_output_dir(out_dir, overwrite)
    files.remove_stale_staging(out_dir)
    run = open_run(run_dir)  # refuses an unfinished run; refusals come before the model loads
    precision = precision_of(run.spec.params(run.config.model.params))
    if precision == "int8" and fmt != "int8":
        raise ValueError(f"{run_dir} was fitted on int8 encoder features; export it with --format "
                         f"int8 ({fmt} would serve float32 features it was not fitted on)")
    if fmt == "int8":
        check_int8_exportable(run, run_dir)
    run = with_model(run, allow_external_code)
    staging = f"{os.path.abspath(out_dir)}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    facts = (write_int8_bundle(run, run_dir, staging) if fmt == "int8"
             else _write_float(run, run_dir, staging, fmt))
    files.write_json(runs.RunFolder(staging).genres, {
        "genres": run.vocab.genres, "task": run.config.data.task,
        "image_size": list(run.config.data.image_size), "format": fmt,
        "thresholds": None if run.thresholds is None else [float(t) for t in run.thresholds.values],
        "thresholds_from": None if run.thresholds is None else run.thresholds.provenance(),
        "missing_input": "empty string" if len(run.modalities) > 1 else None,
        **facts, "source_run": os.path.abspath(run_dir)})
    files.write_text(os.path.join(staging, runs.OUTPUT_MARKER), "mmgenre export\n")
    if os.path.lexists(out_dir):
        shutil.rmtree(out_dir) if os.path.isdir(out_dir) and not os.path.islink(out_dir) \
            else os.remove(out_dir)
    os.replace(staging, out_dir)
    return out_dir
