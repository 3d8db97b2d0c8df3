"""How much faster a cached-feature epoch is than an uncached one, for a frozen backbone.

    python benchmarks/feature_cache.py                          # ResNet50 (random weights), 128x128
    python benchmarks/feature_cache.py --set model.params.weights=imagenet   # with the real file cached

Times, on the train split: one epoch of the full model on posters (backbone frozen,
so every epoch recomputes the same features), building the feature cache once, and one
epoch of the head on cached features. Speed does not depend on the weight values, so
random weights (no download) give the same timings as ImageNet weights.
Writes OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time

from mmgenre.files import (
    atomic_path,
    write_csv,  # noqa: E402
)
from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/resnet.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="results/feature_cache")
    args = parser.parse_args(argv)
    import pandas as pd

    from mmgenre.config import load_config
    from mmgenre.data import prepare
    from mmgenre.evaluation.reports import provenance, to_markdown
    from mmgenre.models import registry
    from mmgenre.training import feature_cache, fit

    # Random weights unless told otherwise: timings do not depend on weight values.
    cfg = load_config(args.config, overrides=["data.augment=false", "model.params.weights=none",
                                              *args.set])
    prepared = prepare.prepare_data(cfg.data, registry.get(cfg.model.name, cfg.model.params),
                                    show_progress=False)
    model = fit.compile_model(fit.build_for_data(cfg, prepared), cfg, len(prepared.vocab))
    train_ds = prepare.make_split_dataset(cfg.data, prepared, "train")
    for _ in train_ds:  # decode and cache posters first: time the model, not JPEG decoding
        pass
    model.fit(train_ds.take(1), epochs=1, verbose=0)  # warm-up (tracing)
    start = time.perf_counter()
    model.fit(train_ds, epochs=1, verbose=0)
    uncached = time.perf_counter() - start

    extractor, head = feature_cache.frozen_backbone(model)
    head = fit.compile_model(head, cfg, len(prepared.vocab))
    tmp = tempfile.mkdtemp()
    start = time.perf_counter()
    features = feature_cache.cached_features(extractor, train_ds, os.path.join(tmp, "train.npy"))
    build = time.perf_counter() - start
    shutil.rmtree(tmp)
    features_ds = feature_cache.feature_dataset(features, prepared.splits["train"][1],
                                                cfg.data.batch_size, training=True)
    head.fit(features_ds.take(1), epochs=1, verbose=0)
    start = time.perf_counter()
    head.fit(features_ds, epochs=1, verbose=0)
    cached = time.perf_counter() - start

    row = {"model": cfg.model.name, "image_size": "x".join(map(str, cfg.data.image_size)),
           "train_posters": len(features), "uncached_epoch_s": round(uncached, 2),
           "cache_build_s": round(build, 2), "cached_epoch_s": round(cached, 3),
           "speedup_per_epoch": round(uncached / cached, 1)}
    table = pd.DataFrame([row])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_csv(table, args.out + ".csv")
    command = "python benchmarks/feature_cache.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# Frozen-backbone feature cache\n\n{provenance(command)}\n\n{to_markdown(table, '.4g')}\n\n"
                "An uncached epoch runs the frozen backbone on every poster; a cached epoch trains the head "
                "on features computed once (cache_build_s, paid on the first epoch only).\n")
    print(to_markdown(table, ".4g"))


if __name__ == "__main__":
    main()
