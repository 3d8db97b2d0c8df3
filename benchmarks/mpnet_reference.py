"""Checks mmgenre's MPNet port against Hugging Face transformers' PyTorch MPNetModel.

    python -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch==2.13.0 transformers
    python benchmarks/mpnet_reference.py --reference-python /tmp/refenv/bin/python

The reference runs in that separate environment (transformers and torch stay out of
mmgenre's dependencies): the same prepared all-mpnet-base-v2 folder, its own
tokenizer (tokenizer.json), MPNetModel, mean pooling over real tokens and L2
normalisation, as sentence-transformers' modules.json lists them. This script then
embeds the same overviews with mmgenre (MPNetTokenizer + MPNetBackbone, the
length-bucketed ``embed_texts`` and the in-graph ``text_encoder_backbone``) and
compares token ids (equal) and embeddings (max absolute difference), writing
OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

from mmgenre.files import (
    atomic_path,
    write_csv,  # noqa: E402
)

_REFERENCE = r"""
import json, sys
import numpy as np, torch
from transformers import AutoModel, AutoTokenizer
folder, texts_path, out_path = sys.argv[1:4]
texts = json.load(open(texts_path))
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder).eval()
ids, embeddings = [], []
with torch.no_grad():
    for text in texts:
        batch = tokenizer([text], truncation=True, max_length=384, return_tensors="pt")
        hidden = model(**batch).last_hidden_state[0]
        pooled = hidden.mean(0)
        embeddings.append((pooled / pooled.norm()).numpy())
        ids.append(batch["input_ids"][0].tolist())
np.save(out_path, np.stack(embeddings))
json.dump(ids, open(out_path + ".ids.json", "w"))
print(torch.__version__, __import__("transformers").__version__)
"""


def run_reference(python: str, folder: str, texts: list):
    """(embeddings (n, 768), token ids per text, "torch transformers" versions) computed by
    Hugging Face transformers in the environment of ``python``."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        texts_path, out = os.path.join(tmp, "texts.json"), os.path.join(tmp, "reference.npy")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        done = subprocess.run([python, "-c", _REFERENCE, folder, texts_path, out],
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"reference failed: {done.stderr.strip().splitlines()[-1]}")
        with open(out + ".ids.json", encoding="utf-8") as f:
            return np.load(out), json.load(f), done.stdout.strip().splitlines()[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True,
                        help="python of an environment with torch and transformers")
    parser.add_argument("--data", default="../shared/datasets/posters-overviews")
    parser.add_argument("--n", type=int, default=50, help="overviews (the first train rows)")
    parser.add_argument("--out", default="results/mpnet_reference")
    args = parser.parse_args(argv)
    command = "python benchmarks/mpnet_reference.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))

    from mmgenre.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np
    import pandas as pd

    from mmgenre.encoders import sources
    from mmgenre.encoders.loading import load_text_encoder
    from mmgenre.encoders.text import embed_texts
    from mmgenre.evaluation import reports
    from mmgenre.models.backbones import text_encoder_backbone

    folder = sources.prepare("mpnet")
    table = pd.read_csv(os.path.join(args.data, "movies.csv"), keep_default_na=False)
    texts = [t for t in table[table["split"] == "train"]["overview"] if t.strip()][:args.n]
    reference, reference_ids, versions = run_reference(args.reference_python, folder, texts)
    _, tokenizer = load_text_encoder("mpnet")
    ours_ids = [[tokenizer.cls_token_id, *np.asarray(tokenizer(t)).tolist()[:382],
                 tokenizer.sep_token_id] for t in texts]
    bucketed = embed_texts("mpnet", texts, show_progress=False)
    overview = keras.Input(shape=(), dtype="string")
    graph = keras.Model(overview, text_encoder_backbone(overview, "mpnet"))
    in_graph = graph.predict(np.asarray(texts, dtype=object), batch_size=8, verbose=0)
    rows = [{"check": "token ids equal (overviews)",
             "value": sum(a == b for a, b in zip(ours_ids, reference_ids)), "of": len(texts)},
            {"check": "max absolute embedding difference, embed_texts (length-bucketed batches)",
             "value": float(np.abs(bucketed - reference).max()), "of": len(texts)},
            {"check": "max absolute embedding difference, in-graph backbone (raw strings)",
             "value": float(np.abs(in_graph - reference).max()), "of": len(texts)},
            {"check": "min cosine(mmgenre, reference)",
             "value": float(np.min(np.sum(bucketed * reference, axis=1))), "of": len(texts)}]
    frame = pd.DataFrame([{**r, "value": f"{r['value']:.2e}" if isinstance(r["value"], float)
                           else str(r["value"])} for r in rows])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    reports_table = reports.to_markdown(frame)
    write_csv(frame, args.out + ".csv")
    with atomic_path(args.out + ".md") as _tmp, open(_tmp, "w", encoding="utf-8") as f:
        f.write(f"# MPNet port against the reference implementation\n\n{reports.provenance(command)}\n\n"
                f"Reference: Hugging Face transformers' MPNetModel in PyTorch (torch, transformers: "
                f"{versions}) on the same prepared all-mpnet-base-v2 folder, its own tokenizer, mean "
                f"pooling and L2 normalisation; {len(texts)} train overviews of `{args.data}`. "
                f"Longest: {max(map(len, reference_ids))} tokens.\n\n{reports_table}\n")
    print(reports_table)
    ok = rows[0]["value"] == len(texts) and max(rows[1]["value"], rows[2]["value"]) < 1e-4
    print("match to 1e-4" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
