"""How cost grows with work: batch size and dataset size.

    python benchmarks/scaling.py                          # defaults below, sample set + synthetic
    python benchmarks/scaling.py --batch-sizes 8 32 --sizes 1000 --out /tmp/scaling   # quick look

1. Training throughput (samples/s, after warm-up) of each config at batch sizes 8..256,
   from the cached pipeline and on one in-memory batch.
2. Input-pipeline throughput for synthetic datasets of 1,000 to 100,000 movies
   (`mmgenre synth`, posters 268x182 like the sample set), with tf.data's memory cache,
   file cache and no cache: first pass (decode) and second pass.
Writes OUT_batch.csv, OUT_size.csv, OUT.md and OUT.png.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time

from mmgenre.files import (
    atomic_path,
    write_csv,  # noqa: E402
)
from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import common  # noqa: E402  (benchmarks/common.py: benchmark-only tables and plots)


def batch_scaling(config_path, batch_sizes, steps):
    import tensorflow as tf

    from mmgenre.config import load_config
    from mmgenre.data import prepare
    from mmgenre.models import registry
    from mmgenre.training import fit

    cfg = load_config(config_path, overrides=["data.augment=false"])
    prepared = prepare.prepare_data(cfg.data, registry.get(cfg.model.name, cfg.model.params),
                                    show_progress=False)
    rows = []
    for batch_size in batch_sizes:
        cfg.data.batch_size = batch_size
        model = fit.compile_model(fit.build_for_data(cfg, prepared), cfg, len(prepared.vocab))
        cached = prepare.make_split_dataset(cfg.data, prepared, "train", training=True)
        for _ in cached:  # fill the cache
            pass
        row = {"config": os.path.basename(config_path), "batch_size": batch_size}
        one_batch = tf.data.Dataset.from_tensor_slices(next(iter(cached))).batch(batch_size).cache()
        for name, ds in (("cached_pipeline", cached), ("in_memory", one_batch)):
            ds = ds.repeat()
            model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
            start = time.perf_counter()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
            row[f"train_{name}_sps"] = round(steps * batch_size / (time.perf_counter() - start), 1)
        rows.append(row)
        print(row, flush=True)
    return rows


def size_scaling(sizes, cache_modes, work_dir, batch_size):
    from mmgenre.config import DataConfig
    from mmgenre.data import prepare
    from mmgenre.data.synth import make_synthetic

    rows = []
    for n in sizes:
        data_dir = os.path.join(work_dir, f"synth-{n}")
        if not os.path.exists(os.path.join(data_dir, "movies.csv")):
            start = time.perf_counter()
            make_synthetic(data_dir, n, seed=0, image_size=(268, 182), splits=(1.0, 0.0, 0.0))
            print(f"generated {n} movies in {time.perf_counter() - start:.0f}s", flush=True)
        data_cfg = DataConfig(path=data_dir, image_size=(128, 128), batch_size=batch_size,
                              min_genre_count=1)
        prepared = prepare.prepare_data(data_cfg, prepare.Inputs(("poster",)),
                                        show_progress=False)
        for mode in cache_modes:
            cache_prefix = os.path.join(work_dir, f"cache-{n}")
            data_cfg.cache = {"memory": "memory", "none": "none", "file": cache_prefix}[mode]
            ds = prepare.make_split_dataset(data_cfg, prepared, "train", training=True)
            row = {"movies": n, "cache": mode}
            for rep in ("first_pass", "second_pass"):
                start = time.perf_counter()
                for _ in ds:
                    pass
                row[f"{rep}_sps"] = round(n / (time.perf_counter() - start), 1)
            rows.append(row)
            print(row, flush=True)
            for name in os.listdir(work_dir):
                if name.startswith(f"cache-{n}"):
                    os.remove(os.path.join(work_dir, name))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/cnn.yaml", "configs/lstm.yaml"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--cache-modes", nargs="+", default=["memory", "file", "none"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--work-dir", default="runs/scaling", help="synthetic data and cache files")
    parser.add_argument("--keep-data", action="store_true", help="keep the synthetic datasets")
    parser.add_argument("--out", default="results/scaling")
    args = parser.parse_args(argv)
    import pandas as pd

    from mmgenre.evaluation.reports import provenance, to_markdown

    by_batch = pd.DataFrame([r for c in args.configs for r in batch_scaling(c, args.batch_sizes, args.steps)])
    os.makedirs(args.work_dir, exist_ok=True)
    by_size = pd.DataFrame(size_scaling(args.sizes, args.cache_modes, args.work_dir, 64))
    if not args.keep_data:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_csv(by_batch, args.out + "_batch.csv")
    write_csv(by_size, args.out + "_size.csv")
    common.scaling(by_batch, by_size, args.out + ".png")
    command = "python benchmarks/scaling.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# Scaling\n\n{provenance(command)}\n\n## Training throughput by batch size "
                f"(samples/s)\n\n{to_markdown(by_batch, '.4g')}\n\n## Input pipeline by dataset size "
                "(posters/s, 128x128, batch 64)\n\n"
                f"{to_markdown(by_size, '.4g')}\n\n![scaling]({os.path.basename(args.out)}.png)\n")
    print(to_markdown(by_batch, ".4g"))
    print(to_markdown(by_size, ".4g"))


if __name__ == "__main__":
    main()
