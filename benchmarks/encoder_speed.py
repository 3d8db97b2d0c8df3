"""Embedding time of the frozen encoders on this machine (the cost the embedding cache saves).

    python benchmarks/encoder_speed.py                 # the paired set's overviews and posters
    python benchmarks/encoder_speed.py --n 64 --out /tmp/speed   # a quick look

Measures all-MiniLM-L6-v2 on overviews batched by length against every overview padded to
256 tokens (same process, same texts), all-mpnet-base-v2 batched by length, and
EfficientNet-Lite0 on 224x224 posters; then one overview at a time (what serving a single
movie costs): MiniLM, MPNet, and a keras-hub BertBackbone of MPNet's size with random weights
(12 layers, 768 wide), which says whether a latency is the port's or the model size's.
Writes OUT.md, OUT.csv and OUT_single.csv.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from mmgenre.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenre.encoders import sources  # noqa: E402
from mmgenre.encoders.image import embed_posters  # noqa: E402
from mmgenre.encoders.text import embed_texts  # noqa: E402
from mmgenre.evaluation import reports  # noqa: E402
from mmgenre.files import atomic_path, write_csv  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/posters-overviews")
    parser.add_argument("--n", type=int, default=512, help="overviews and posters to embed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--single", type=int, default=50,
                        help="overviews timed one at a time for the latency table")
    parser.add_argument("--out", default="results/encoder_speed")
    args = parser.parse_args(argv)
    command = "python benchmarks/encoder_speed.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    from mmgenre.data.records import load_records

    table = load_records(args.data)
    texts = [t for t in table["overview"] if isinstance(t, str)][: args.n]
    posters = [p for p in table["poster"] if isinstance(p, str) and os.path.isfile(p)][: args.n]
    for name in ("minilm", "mpnet", "efficientnet_lite0"):
        sources.prepare(name)
    for name in ("minilm", "mpnet"):
        embed_texts(name, texts[:8], show_progress=False)  # warm-up: load and trace once
    rows = []
    for label, run in (("MiniLM, batches bucketed by length", lambda: embed_texts(
            "minilm", texts, args.batch_size, show_progress=False)),
                       ("MiniLM, every overview padded to 256 tokens", lambda: embed_texts(
                           "minilm", texts, args.batch_size, show_progress=False, pad_to=256)),
                       ("MPNet, batches bucketed by length", lambda: embed_texts(
                           "mpnet", texts, args.batch_size, show_progress=False)),
                       ("EfficientNet-Lite0, 224x224 posters", lambda: embed_posters(
                           "efficientnet_lite0", posters, args.batch_size, show_progress=False))):
        start = time.perf_counter()
        n = len(run())
        seconds = time.perf_counter() - start
        rows.append({"encoder": label, "items": n, "seconds": round(seconds, 1),
                     "items_per_second": round(n / seconds, 1)})
        print(rows[-1])
    frame = pd.DataFrame(rows)
    ratio = frame["items_per_second"][0] / frame["items_per_second"][1]
    single = pd.DataFrame(single_overview_latency(texts[:args.single]))
    print(single)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_csv(frame, args.out + ".csv")
    write_csv(single, args.out + "_single.csv")
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# Frozen-encoder embedding speed\n\n{reports.provenance(command)}\n\n"
                f"Batch {args.batch_size}; model loading excluded (timed after a warm-up). "
                f"Bucketing by length is {ratio:.1f}x faster than padding to 256 tokens, "
                "measured in this run.\n\n" + reports.to_markdown(frame, ".1f") + "\n\n"
                f"## One overview at a time\n\nThe first {min(args.single, len(texts))} "
                "overviews, each alone (batch 1, tokenizing included for the encoders), after a "
                "warm-up; milliseconds. The BertBackbone row runs MPNet's token ids through a "
                "keras-hub BERT of the same size with random weights.\n\n"
                + reports.to_markdown(single, ".1f") + "\n")
    print(f"bucketed / padded: {ratio:.1f}x")


def single_overview_latency(texts) -> list:
    """[{encoder, p50 ms, p90 ms}] for one overview at a time."""
    import keras_hub
    import tensorflow as tf

    from mmgenre.encoders.loading import loaded_encoder

    (_, tokenizer), _ = loaded_encoder("mpnet", "text", lambda b: lambda x: b(x, training=False))
    bert = keras_hub.models.BertBackbone(vocabulary_size=30527, num_layers=12, num_heads=12,
                                         hidden_dim=768, intermediate_dim=3072,
                                         max_sequence_length=514)
    forward = tf.function(lambda x: bert(x, training=False)["sequence_output"],
                          reduce_retracing=True)

    def bert_one(text):
        ids = np.asarray(tokenizer(text), np.int32)[None, :510] % 30527
        forward({"token_ids": ids, "padding_mask": np.ones_like(ids),
                 "segment_ids": np.zeros_like(ids)}).numpy()

    rows = []
    for label, one in (("MiniLM (all-MiniLM-L6-v2, 6 layers, 384 wide)",
                        lambda t: embed_texts("minilm", [t], 1, show_progress=False)),
                       ("MPNet (all-mpnet-base-v2, 12 layers, 768 wide)",
                        lambda t: embed_texts("mpnet", [t], 1, show_progress=False)),
                       ("keras-hub BertBackbone, MPNet's size, random weights", bert_one)):
        for text in texts[:3]:
            one(text)  # warm-up: trace the shapes
        ms = []
        for text in texts:
            start = time.perf_counter()
            one(text)
            ms.append((time.perf_counter() - start) * 1000)
        rows.append({"encoder": label, "overviews": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                     "p90_ms": float(np.percentile(ms, 90))})
    return rows


if __name__ == "__main__":
    main()
