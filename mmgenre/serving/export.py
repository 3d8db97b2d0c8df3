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

from mmgenre import runs, tasks
from mmgenre.data import pipeline
from mmgenre.data.prepare import takes_raw_text
from mmgenre.inference import load_run

FORMATS = ("saved_model", "tflite")


def serving_function(run):
    """(fn, input signature) of the raw-input endpoint for a loaded run."""
    model, modalities = run.model, tuple(run.modalities)
    size = tuple(run.config.data.image_size)
    # A model reading two inputs takes either alone: the absent one gets its absent signal
    # (an empty string in, a black poster or an empty overview to the model), as in evaluate.
    fused = len(modalities) > 1
    raw_text = takes_raw_text(model)
    n = len(run.vocab.genres)
    thresholds = tf.constant(run.threshold_values, tf.float32)
    single = not tasks.get(run.config.data.task).uses_thresholds  # the top genre, no thresholds

    def decode(data):
        if not fused:
            return pipeline.decode_poster(data, size)
        return tf.cond(tf.strings.length(data) > 0, lambda: pipeline.decode_poster(data, size),
                       lambda: tf.zeros((*size, 3), tf.uint8))

    def serve(**raw):
        inputs = {}
        if "poster" in modalities:
            images = tf.map_fn(decode, raw["poster"], fn_output_signature=tf.TensorSpec((*size, 3), tf.uint8))
            inputs["poster"] = pipeline.to_unit_range(images)
        if "overview" in modalities:
            inputs["overview"] = raw["overview"] if raw_text else run.vectorizer(raw["overview"])
        probabilities = model(inputs, training=False)
        if single:
            predicted = tf.one_hot(tf.argmax(probabilities, axis=-1), n) > 0
        else:
            predicted = probabilities >= thresholds
        return {"probabilities": probabilities, "predicted": predicted}

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


def export_run(run_dir: str, out_dir: str, fmt: str = "saved_model",
               allow_external_code: bool = False, overwrite: bool = False) -> str:
    """Writes the export to ``out_dir`` (replaced whole only when complete); returns it.

    ``out_dir`` must be new, empty or an earlier export (``runs.OUTPUT_MARKER``)
    unless ``overwrite``; the run must be finished (its completion record), so
    the export carries its dev-chosen thresholds. Staging folders of killed
    exports to the same place are removed first.
    """
    import keras

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    runs.check_output_dir(out_dir, overwrite)
    runs.remove_stale_staging(out_dir)
    run = load_run(run_dir, allow_external_code)  # refuses an unfinished run
    serve, signature = serving_function(run)
    staging = f"{os.path.abspath(out_dir)}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
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
    needs_flex = _replace_with_tflite(run, run_dir, staging, saved_model) if fmt == "tflite" else False
    runs.write_json(runs.RunFolder(staging).genres, {
        "genres": run.vocab.genres, "inputs": list(signature), "task": run.config.data.task,
        "image_size": list(run.config.data.image_size), "format": fmt,
        "thresholds": None if run.thresholds is None else [float(t) for t in run.thresholds.values],
        "thresholds_from": None if run.thresholds is None else run.thresholds.provenance(),
        "missing_input": "empty string" if len(run.modalities) > 1 else None,
        **({"needs_flex_delegate": needs_flex} if fmt == "tflite" else {}),
        "source_run": os.path.abspath(run_dir)})
    runs.write_text(os.path.join(staging, runs.OUTPUT_MARKER), "mmgenre export\n")
    if os.path.lexists(out_dir):
        shutil.rmtree(out_dir) if os.path.isdir(out_dir) and not os.path.islink(out_dir) \
            else os.remove(out_dir)
    os.replace(staging, out_dir)
    return out_dir
