"""Sentence embeddings from a BERT-family encoder (keras-hub), frozen, batched by length.

A folder in Hugging Face format (config.json + model.safetensors + vocab.txt)
loads offline through keras-hub's converter. Pooling follows sentence-
transformers' all-MiniLM-L6-v2 (modules.json: mean over real tokens, then L2
normalisation). Overviews are sorted by token count and batched so each batch
is padded only to its own longest overview: on 2 CPU cores that embeds 3.0x
faster than padding every overview to 256 tokens (results/encoder_speed.md; the
longest sample overview has 206 tokens, the mean 65).
"""

from __future__ import annotations

import json
import os

import numpy as np

from mmgenre.encoders.loading import loaded_encoder
from mmgenre.encoders.sources import resolve
from mmgenre.progress import progress

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on at most 256 word pieces


def max_tokens(name: str) -> int:
    """Word pieces the encoder embeds, special tokens included: its sentence-transformers
    max_seq_length (256 for all-MiniLM-L6-v2, 384 for all-mpnet-base-v2), else MAX_TOKENS."""
    path = os.path.join(resolve(name, "text"), "sentence_bert_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return int(json.load(f).get("max_seq_length", MAX_TOKENS))
    return MAX_TOKENS


def backbone_inputs(backbone, token_ids, padding_mask) -> dict:
    """The inputs ``backbone`` takes (BERT also wants segment ids; MPNet has none)."""
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = token_ids * 0
    return inputs


def embed_texts(name: str, texts, batch_size: int = 32, show_progress: bool = True,
                pad_to: int | None = None) -> np.ndarray:
    """(n, hidden) float32 L2-normalised mean-pooled embeddings of ``texts`` (n strings).

    ``pad_to`` pads every batch to that many tokens instead of its own longest
    overview (the slow way, kept for benchmarks/encoder_speed.py).
    """
    # One traced function for every batch width (predict_on_batch retraced per shape).
    (backbone, tokenizer), forward = loaded_encoder(
        name, "text", lambda b: lambda x: b(x, training=False)["sequence_output"])
    limit = min(max_tokens(name), backbone.max_sequence_length) - 2  # room for [CLS] and [SEP]
    ids = [np.asarray(tokenizer(t), np.int32)[:limit] for t in texts]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = [np.concatenate([[cls], x, [sep]]).astype(np.int32) for x in ids]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), backbone.hidden_dim), np.float32)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if show_progress:
        batches = progress(batches, len(batches), f"embedding {len(ids)} texts")
    for batch in batches:
        width = pad_to or max(len(ids[i]) for i in batch)
        token_ids = np.zeros((len(batch), width), np.int32)
        mask = np.zeros((len(batch), width), np.int32)
        for row, i in enumerate(batch):
            token_ids[row, :len(ids[i])] = ids[i]
            mask[row, :len(ids[i])] = 1
        hidden = forward(backbone_inputs(backbone, token_ids, mask)).numpy()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        out[batch] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return out
