"""Serving speed on this machine: exported models on raw inputs, batch prediction, quick runs.

    python benchmarks/serving.py                  # cnn, lstm and fusion_concat on the paired set
    python benchmarks/serving.py --calls 50 --out /tmp/serving   # a quick look
    python benchmarks/serving.py --configs configs/best.yaml configs/linear_probe.yaml \
        --precision float32 int8 --out results/serving_int8   # int8 beside float32, one run

For each config a model is trained briefly (one epoch on 64 movies per split: speed does
not depend on how well it learned; the architecture and input sizes are the config's own)
and exported with `mmgenre export`. Then, in this one process:
- single-movie latency of the exported SavedModel on raw inputs (poster bytes and overview
  text, decoding and vectorising included), p50 and p99 over --calls calls after a warm-up,
  beside in-process `predict_movie` on the same movie;
- batch throughput of the exported model on batches of raw inputs against in-process batch
  prediction (`mmgenre predict --data`: the tf.data pipeline and model.predict_on_batch);
and, as separate processes, the wall time from `mmgenre train --config CONFIG --quick` to its
printed report (TensorFlow import included) for cnn and lstm. Writes OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import time

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from mmgenre.config import load_config  # noqa: E402
from mmgenre.evaluation import reports  # noqa: E402
from mmgenre.files import atomic_path, write_csv  # noqa: E402
from mmgenre.inference import load_run, predict_movie  # noqa: E402
from mmgenre.serving.batch import predict_dataset  # noqa: E402
from mmgenre.serving.export import export_run  # noqa: E402
from mmgenre.training.trainer import train_and_evaluate  # noqa: E402


def percentiles(seconds):
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def load_bundle(folder):
    """The int8 bundle's own loader (mmgenre_int8.py in it), imported as a client would."""
    spec = importlib.util.spec_from_file_location("mmgenre_int8", os.path.join(folder, "mmgenre_int8.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Bundle(folder)


def timed_calls(call, calls: int, warm_up: int = 5) -> list:
    """Seconds of each of ``calls`` calls of ``call()`` after ``warm_up`` untimed ones."""
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def stage_times(bundle, poster: bytes, overview: str, calls: int) -> dict:
    """p50 ms of each stage of the int8 bundle's single-movie call (``Bundle.predict``'s own
    steps, timed apart): decoding and tokenizing, each encoder, the head; and their sum.
    The floor of an int8 movie is the encoders' part: the rest is what serving adds."""
    raw = {name: tf.constant([poster if name == "poster" else overview])
           for name in bundle.info["inputs"]}
    stages = {"decode + tokenize": lambda: bundle.graphs.inputs(raw)}
    prepared = bundle.graphs.inputs(raw)
    features = {}
    for name, spec in bundle.info["encoders"].items():
        run = bundle.encoders[name]
        if spec["kind"] == "image":
            pixels = prepared[f"{name}_pixels"].numpy()
            stages[f"{name} (image, LiteRT)"] = lambda run=run, x=pixels: run(pixels=x)
            features[name] = run(pixels=pixels)["embedding"]
            continue
        mask = prepared[f"{name}_padding_mask"].numpy().astype(np.int32)
        n = int(mask.sum())
        ids = prepared[f"{name}_token_ids"].numpy().astype(np.int32)[:, :n]
        stages[f"{name} (text, int8, {n} tokens)"] = (
            lambda run=run, i=ids, m=mask[:, :n]: run(token_ids=i, padding_mask=m))
        features[name] = run(token_ids=ids, padding_mask=mask[:, :n])["embedding"]
    if bundle.info["head_reads_overview"]:
        features["overview"] = raw["overview"]
    head_inputs = {k: tf.convert_to_tensor(v) for k, v in features.items()}
    stages["head"] = lambda: bundle.graphs.head(head_inputs)
    out = {label: percentiles(timed_calls(call, calls))[0] for label, call in stages.items()}
    out["sum of stages"] = sum(out.values())
    return out


def exported_call(export, precision):
    """fn({input: (batch,) tf.string}) -> (batch, genres) probabilities of the export."""
    if precision == "int8":
        bundle = load_bundle(export)
        return lambda raw: bundle.predict(
            posters=list(raw["poster"].numpy()) if "poster" in raw else None,
            overviews=[t.decode() for t in raw["overview"].numpy()] if "overview" in raw else None)[0]
    served = tf.saved_model.load(export)
    return lambda raw: served.serve(raw)["probabilities"].numpy()


def measure(config, data, workdir, calls, batch_size, precision="float32"):
    overrides = ["train.epochs=1", "data.limit=64", f"data.path={data}"]
    if precision != "float32":
        overrides.append(f"model.params.precision={precision}")
    cfg = load_config(config, overrides=overrides)
    run_dir = os.path.join(workdir, f"{cfg.name}-{precision}")
    train_and_evaluate(cfg, run_dir, verbose=0)
    fmt = "int8" if precision == "int8" else "saved_model"
    export = export_run(run_dir, os.path.join(workdir, f"{cfg.name}-{precision}-export"), fmt)
    run = load_run(run_dir)
    table = pd.read_csv(os.path.join(data, "movies.csv"), keep_default_na=False)
    row = table[table["split"] == "test"].iloc[0]
    poster, overview = os.path.join(data, row["poster"]), row["overview"]
    given = {m: (poster if m == "poster" else overview) for m in run.modalities}
    serve = exported_call(export, precision)
    raw = {m: tf.constant([open(v, "rb").read() if m == "poster" else v]) for m, v in given.items()}
    out = {"model": cfg.name, "precision": precision}
    for label, call in (("exported, raw inputs", lambda: serve(raw)),
                        ("in-process predict_movie", lambda: predict_movie(run, **given))):
        out[f"{label} p50 ms"], out[f"{label} p99 ms"] = percentiles(timed_calls(call, calls))
    batch = {m: tf.constant([v.numpy()[0]] * batch_size) for m, v in raw.items()}
    serve(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 5:
        serve(batch)
        n += batch_size
    out["exported batch movies/s"] = n / (time.perf_counter() - start)
    csv = os.path.join(workdir, f"{cfg.name}-predictions.csv")
    out["in-process batch movies/s"] = predict_dataset(run_dir, data, csv, "test",
                                                       batch_size=batch_size)["movies_per_second"]
    stages = []
    if precision == "int8":
        times = stage_times(load_bundle(export), raw["poster"].numpy()[0] if "poster" in raw else b"",
                            overview, calls)
        stages = [{"model": cfg.name, "stage": k, "p50 ms": v} for k, v in times.items()]
    return out, stages


def quick_run_seconds(config, workdir):
    """Wall time of `mmgenre train --config CONFIG --quick` in a fresh process and folder."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mmgenre.cli", "train", "--config", config, "--quick",
                    "--workdir", os.path.join(workdir, "quick-" + os.path.basename(config))],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/cnn.yaml", "configs/lstm.yaml",
                                                          "configs/fusion_concat.yaml"])
    parser.add_argument("--quick-configs", nargs="*", default=["configs/cnn.yaml", "configs/lstm.yaml"])
    parser.add_argument("--data", default="../shared/datasets/posters-overviews")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "int8"],
                        help="encoder precisions to measure each config at (int8: runs fitted on "
                             "int8 encoders, exported with --format int8; configs over encoders only)")
    parser.add_argument("--out", default="results/serving")
    args = parser.parse_args(argv)
    command = "python benchmarks/serving.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory() as workdir:
        measured = [measure(c, args.data, workdir, args.calls, args.batch_size, p)
                    for c in args.configs for p in args.precision]
        rows, stages = [row for row, _ in measured], sum((s for _, s in measured), [])
        quick = [{"config": c, "seconds to report": quick_run_seconds(c, workdir)}
                 for c in args.quick_configs]
    frame, quick = pd.DataFrame(rows), pd.DataFrame(quick)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_csv(frame, args.out + ".csv")
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# Serving speed\n\n{reports.provenance(command)}\n\n"
                f"Single movie: {args.calls} calls after 5 warm-up calls; batches of {args.batch_size} "
                "raw inputs for 5 s (exported) against `mmgenre predict --data` on the test split "
                "(in-process, tf.data pipeline). Models trained one epoch on 64 movies per split "
                "(speed only). int8: the run fitted on int8 LiteRT encoders, exported with "
                "`--format int8` and served by the bundle's own loader (mmgenre_int8.py).\n\n"
                + reports.to_markdown(frame, ".1f") + "\n\n"
                "Time from `mmgenre train --config CONFIG --quick` to its printed report, a fresh "
                "process (TensorFlow import included):\n\n" + reports.to_markdown(quick, ".1f") + "\n"
                + ("\nint8 single movie by stage (the bundle's own steps timed apart, p50 over "
                   f"{args.calls} calls; the encoders are the floor):\n\n"
                   + reports.to_markdown(pd.DataFrame(stages), ".1f") + "\n" if stages else ""))
    print(reports.to_markdown(frame, ".1f"))
    print(reports.to_markdown(quick, ".1f"))
    if stages:
        print(reports.to_markdown(pd.DataFrame(stages), ".1f"))


if __name__ == "__main__":
    main()
