"""Throughput, latency and memory of each model config, CPU or GPU, one row per variant.

    python benchmarks/throughput.py                      # cnn, lstm, compact_resnet, bilstm_attention, fusion
    python benchmarks/throughput.py --configs configs/cnn.yaml --batch-size 32 --steps 10
    python benchmarks/throughput.py --numpy-baseline     # add the study's NumPy-array feeding for cnn

Each config runs in its own process (so peak memory is that model's) and measures,
after warm-up:
- pipeline alone: train samples/s from files to batched tensors, cold (decode) and cached;
- training from files (no cache), from the cached pipeline (what `mmgenre train` does after
  its first epoch), and on the same batch already in memory (the model's own limit); the
  ratio of the last two is the pipeline efficiency (target >= 0.9 for cnn and lstm at
  batch 64 on a 2-core CPU);
- batch inference samples/s and single-movie latency p50/p95/p99 (poster file + overview
  text in, genres out, through mmgenre.inference.predict_movie);
- peak resident memory of the process.
On a GPU machine the same command adds mixed_float16 and XLA (jit_compile) variants and
reports samples/s per GPU; on a CPU-only machine the table says so.
Writes OUT.csv and OUT.md (with command, date, machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

DEFAULT_CONFIGS = ["configs/cnn.yaml", "configs/lstm.yaml", "configs/compact_resnet.yaml",
                   "configs/bilstm_attention.yaml", "configs/bag_of_words.yaml",
                   "configs/fusion_concat.yaml"]


def _rate(n_samples, seconds):
    return round(n_samples / seconds, 1) if seconds > 0 else float("nan")


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _build(config_path, data, batch_size, precision, xla, strategy_name):
    """(config, spec, prepared data, compiled model, strategy) for one measured config."""
    import keras
    import tensorflow as tf

    from mmgenre.config import load_config
    from mmgenre.data import prepare
    from mmgenre.models import registry
    from mmgenre.training import distributed, fit

    if (precision != "float32" or xla) and not tf.config.list_physical_devices("GPU"):
        raise SystemExit(f"{precision}/XLA variants are GPU-only options and this machine has no GPU")
    if precision != "float32":
        keras.mixed_precision.set_global_policy(precision)
    overrides = [f"data.batch_size={batch_size}", "data.augment=false"]
    if data:
        overrides.append(f"data.path={data}")
    cfg = load_config(config_path, overrides=overrides)
    spec = registry.get(cfg.model.name, cfg.model.params)
    prepared = prepare.prepare_data(cfg.data, spec, show_progress=False)
    if batch_size > len(prepared.splits["train"][0]):
        raise SystemExit(f"batch size {batch_size} is larger than the train split "
                         f"({len(prepared.splits['train'][0])} rows)")
    strategy = distributed.make_strategy(strategy_name)
    with strategy.scope():
        model = fit.compile_model(fit.build_for_data(cfg, prepared), cfg, len(prepared.vocab))
    model.jit_compile = bool(xla)
    return cfg, spec, prepared, model, strategy


def _training_rates(cfg, prepared, model, batch_size, steps) -> dict:
    """Samples per second of the input pipeline, of training from it and from memory, and of
    inference on one batch."""
    import tensorflow as tf

    from mmgenre.data import prepare

    def dataset(cache):
        cfg.data.cache = cache
        return prepare.make_split_dataset(cfg.data, prepared, "train", training=True)

    def train_rate(ds):
        ds = ds.repeat()
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # warm-up: tracing, first batches
        seconds = _timed(lambda: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0))
        return _rate(steps * batch_size, seconds)

    n = len(prepared.splits["train"][0])
    cached = dataset("memory")
    row = {"pipeline_cold_sps": _rate(n, _timed(lambda: [None for _ in cached])),
           "pipeline_cached_sps": _rate(n, _timed(lambda: [None for _ in cached])),
           "train_from_files_sps": train_rate(dataset("none")),
           "train_cached_pipeline_sps": train_rate(cached)}
    batch = next(iter(cached))
    # The same batch from memory, with the batch dimension unknown like the pipeline's
    # (from_tensors would fix it at 64 and let TensorFlow specialise the graph).
    row["train_in_memory_sps"] = train_rate(
        tf.data.Dataset.from_tensor_slices(batch).batch(batch_size).cache())
    row["pipeline_efficiency"] = round(row["train_cached_pipeline_sps"] / row["train_in_memory_sps"], 3)
    row["pipeline_efficiency_no_cache"] = round(row["train_from_files_sps"] / row["train_in_memory_sps"], 3)
    x = batch[0]
    model.predict_on_batch(x)
    row["inference_sps"] = _rate(steps * batch_size,
                                 _timed(lambda: [model.predict_on_batch(x) for _ in range(steps)]))
    return row


def _single_movie_latency(cfg, spec, prepared, model) -> dict:
    """p50/p95/p99 milliseconds of ``predict_movie`` on one train movie, 50 calls after 5."""
    import numpy as np

    from mmgenre.inference import Run, predict_movie

    run = Run("", cfg, model, prepared.vocab, prepared.vectorizer, None)
    movie = prepared.splits["train"][0].iloc[0]
    kwargs = {m: movie[m] for m in spec.modalities}
    for _ in range(5):
        predict_movie(run, **kwargs)
    latencies = []
    for _ in range(50):
        start = time.perf_counter()
        predict_movie(run, **kwargs)
        latencies.append((time.perf_counter() - start) * 1000)
    return {f"latency_p{q}_ms": round(float(np.percentile(latencies, q)), 2) for q in (50, 95, 99)}


def measure(config_path, data, batch_size, steps, precision, xla, numpy_baseline, strategy_name):
    """Runs every measurement for one config in this process; returns a dict row."""
    cfg, spec, prepared, model, strategy = _build(config_path, data, batch_size, precision, xla,
                                                  strategy_name)
    row = {"config": os.path.basename(config_path), "model": cfg.model.name, "strategy": strategy_name,
           "replicas": strategy.num_replicas_in_sync,
           "inputs": "+".join(spec.modalities), "batch_size": batch_size, "precision": precision,
           "xla": bool(xla), "params": model.count_params()}
    row.update(_training_rates(cfg, prepared, model, batch_size, steps))
    row.update(_single_movie_latency(cfg, spec, prepared, model))
    if numpy_baseline and spec.modalities == ("poster",):
        row.update(numpy_feeding(cfg, prepared, model, prepared.splits["train"][1]))
    row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def numpy_feeding(cfg, prepared, model, targets):
    """The study's way: every poster into one NumPy array, then model.fit(x, y).

    Compared in the same process with mmgenre's pipeline: seconds until one epoch
    is done (loading included) and seconds per later epoch.
    """
    import numpy as np
    from PIL import Image

    rows = prepared.splits["train"][0]
    height, width = cfg.data.image_size

    def load():
        return np.stack([np.asarray(Image.open(p).convert("RGB").resize((width, height)),
                                    np.float32) / 255.0 for p in rows["poster"]])

    start = time.perf_counter()
    images = load()
    model.fit({"poster": images}, targets, batch_size=cfg.data.batch_size, epochs=1, verbose=0)
    numpy_first = time.perf_counter() - start
    numpy_next = _timed(lambda: model.fit({"poster": images}, targets, batch_size=cfg.data.batch_size,
                                          epochs=1, verbose=0))
    cfg.data.cache = "memory"
    from mmgenre.data import prepare

    ds = prepare.make_split_dataset(cfg.data, prepared, "train", training=True)
    pipeline_first = _timed(lambda: model.fit(ds, epochs=1, verbose=0))
    pipeline_next = _timed(lambda: model.fit(ds, epochs=1, verbose=0))
    return {"numpy_first_epoch_s": round(numpy_first, 2), "numpy_next_epoch_s": round(numpy_next, 2),
            "pipeline_first_epoch_s": round(pipeline_first, 2),
            "pipeline_next_epoch_s": round(pipeline_next, 2),
            "numpy_array_mb": round(images.nbytes / 2**20, 1),
            "first_epoch_speedup_vs_numpy": round(numpy_first / pipeline_first, 2),
            "next_epoch_speedup_vs_numpy": round(numpy_next / pipeline_next, 2)}


def device_line():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}", len(gpus)
    return f"CPU only ({os.cpu_count()} cores; no GPU: mixed precision and XLA rows skipped)", 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--data", help="dataset path overriding each config's data.path")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--numpy-baseline", action="store_true",
                        help="also time the study's NumPy-array feeding (poster models)")
    parser.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                        help="tf.distribute strategy (model.fit based, so not multiworker)")
    parser.add_argument("--out", default="results/throughput")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = measure(args.child, args.data, args.batch_size, args.steps, args.precision, args.xla,
                      args.numpy_baseline, args.strategy)
        print("RESULT " + json.dumps(row))
        return
    missing = [c for c in args.configs if not os.path.exists(c)]
    if missing:
        raise SystemExit(f"config not found: {missing}")
    import pandas as pd

    device, n_gpus = device_line()
    table = pd.DataFrame(_measure_in_children(args, device, n_gpus))
    _write_tables(table, args, device,
                  "python benchmarks/throughput.py " + " ".join(map(shlex.quote, argv or sys.argv[1:])))


def _measure_in_children(args, device, n_gpus) -> list:
    """One row per config and precision variant, each measured in a fresh process."""
    variants = [("float32", False)] + ([("mixed_float16", False), ("float32", True),
                                        ("mixed_float16", True)] if n_gpus else [])
    rows = []
    for config in args.configs:
        for precision, xla in variants:
            cmd = [sys.executable, __file__, "--child", config, "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--precision", precision, "--strategy", args.strategy]
            cmd += ["--xla"] if xla else []
            cmd += ["--data", args.data] if args.data else []
            cmd += ["--numpy-baseline"] if args.numpy_baseline and not xla and precision == "float32" else []
            print(f"measuring {config} ({precision}{', XLA' if xla else ''}) ...", flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True)
            result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not result:
                raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
            row = json.loads(result[0][len("RESULT "):])
            row["device"] = device
            if n_gpus:
                row["train_in_memory_sps_per_gpu"] = round(row["train_in_memory_sps"] / row["replicas"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _write_tables(table, args, device, command):
    import keras
    import tensorflow as tf

    from mmgenre import files
    from mmgenre.evaluation.reports import provenance, to_markdown

    files.write_csv(table, args.out + ".csv")
    main_cols = ["config", "inputs", "strategy", "batch_size", "precision", "xla", "pipeline_cold_sps",
                 "pipeline_cached_sps", "train_from_files_sps", "train_cached_pipeline_sps",
                 "train_in_memory_sps", "pipeline_efficiency", "inference_sps", "latency_p50_ms",
                 "latency_p95_ms", "latency_p99_ms", "peak_memory_mb"]
    numpy_cols = [c for c in table.columns if "numpy" in c or c.startswith("pipeline_first")
                  or c.startswith("pipeline_next") or "speedup" in c]
    text = (f"# Throughput and latency\n\n{provenance(command)}\n\nDevice: {device}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}. sps = samples per second "
            "(train split of the dataset, after warm-up). pipeline_efficiency = training from "
            "the cached pipeline / training on one in-memory batch.\n\n"
            f"{to_markdown(table[main_cols], '.4g')}\n")
    if numpy_cols:
        text += ("\n## The study's NumPy feeding vs the tf.data pipeline (same process, same model)\n\n"
                 f"{to_markdown(table[['config', *numpy_cols]].dropna(), '.4g')}\n")
    files.write_text(args.out + ".md", text)
    print(to_markdown(table[main_cols], ".4g"))


if __name__ == "__main__":
    main()
