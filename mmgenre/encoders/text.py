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

from mmgenre.encoders.int8 import check_precision, int8_encoder
from mmgenre.encoders.loading import backbone_inputs, loaded_encoder
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


def text_embedder(name: str, precision: str = "float32"):
    """(tokenize, embed, hidden) of text encoder ``name``, loaded once per process:
    ``tokenize(text)`` -> (tokens,) int32 word-piece ids with [CLS] and [SEP], cut to the
    encoder's limit; ``embed(token_ids, padding_mask)`` ((batch, width) int32 each) -> (batch,
    hidden) float32 unit-length mean-pooled embeddings, by the float32 Keras graph or the int8
    LiteRT one (``mmgenre.encoders.int8``)."""
    # One traced function for every batch width (predict_on_batch retraced per shape).
    (backbone, tokenizer), forward = loaded_encoder(
        name, "text", lambda b: lambda x: b(x, training=False)["sequence_output"])
    limit = min(max_tokens(name), backbone.max_sequence_length) - 2  # room for [CLS] and [SEP]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def tokenize(text):
        ids = np.asarray(tokenizer(text), np.int32)[:limit]
        return np.concatenate([[cls], ids, [sep]]).astype(np.int32)

    if check_precision(precision) == "int8":
        return tokenize, int8_encoder(name, "text"), backbone.hidden_dim

    def embed(token_ids, mask):
        hidden = forward(backbone_inputs(backbone, token_ids, mask)).numpy()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return tokenize, embed, backbone.hidden_dim


def embed_texts(name: str, texts, batch_size: int = 32, show_progress: bool = True,
                pad_to: int | None = None, precision: str = "float32") -> np.ndarray:
    """(n, hidden) float32 L2-normalised mean-pooled embeddings of ``texts`` (n strings) at
    ``precision`` ("float32" or "int8").

    ``pad_to`` pads every batch to that many tokens instead of its own longest
    overview (the slow way, kept for benchmarks/encoder_speed.py).
    """
    tokenize, embed, hidden = text_embedder(name, precision)
    ids = [tokenize(t) for t in texts]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), hidden), np.float32)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if show_progress:
        batches = progress(batches, len(batches), f"embedding {len(ids)} texts")
    for batch in batches:
        token_ids, mask = pad_batch([ids[i] for i in batch], pad_to)
        out[batch] = embed(token_ids, mask)
    return out


def pad_batch(ids, width: int | None = None):
    """((batch, width) token ids, (batch, width) padding mask) of a list of id arrays, padded
    with 0 to ``width`` or to the longest."""
    width = width or max(len(x) for x in ids)
    token_ids = np.zeros((len(ids), width), np.int32)
    mask = np.zeros((len(ids), width), np.int32)
    for row, x in enumerate(ids):
        token_ids[row, :len(x)] = x
        mask[row, :len(x)] = 1
    return token_ids, mask
