"""ResNet50 weights and TF-Hub/SavedModel encoders, offline: tests make their own files."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import assert_trains_and_round_trips

from mmgenre.models import registry, resnet

pytestmark = pytest.mark.slow  # trains or embeds: left out of the quick tier

DATA_ARGS = dict(num_genres=3, image_size=(32, 32))


def test_imagenet_weights_offline_fail_at_once_naming_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(resnet, "host_reachable", lambda *a, **k: False)
    expected = str(tmp_path / "models" / resnet.WEIGHTS_FILE)
    with pytest.raises(ValueError, match=f"place it at {expected}"):
        registry.build_model("resnet", {"weights": "imagenet"}, **DATA_ARGS)


def test_resnet_loads_a_local_weights_file_and_rejects_a_foreign_one(tmp_path):
    import keras

    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3),
                                           pooling="avg")
    path = str(tmp_path / "resnet50_notop.weights.h5")
    backbone.save_weights(path)
    model = registry.build_model("resnet", {"weights": path, "dense_units": 8}, **DATA_ARGS)
    loaded = model.get_layer("backbone")
    np.testing.assert_array_equal(loaded.get_weights()[0], backbone.get_weights()[0])
    assert not any(w.trainable for w in loaded.weights)  # frozen by default
    foreign = registry.build_model("cnn", {}, **DATA_ARGS)
    foreign_path = str(tmp_path / "cnn.weights.h5")
    foreign.save_weights(foreign_path)
    with pytest.raises(ValueError, match="cnn.weights.h5: not ResNet50 notop weights"):
        registry.build_model("resnet", {"weights": foreign_path}, **DATA_ARGS)


def _export_image_encoder(path):
    class Encoder(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((3, 6), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def __call__(self, images):
            return {"features": tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.w)}

    module = Encoder()
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    return path


def _export_text_encoder(path):
    class Encoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            words = tf.strings.split(text)
            n = tf.cast(words.row_lengths(), tf.float32)
            chars = tf.cast(tf.strings.length(text), tf.float32)
            return {"embedding": tf.stack([n, chars, chars / (n + 1.0)], axis=1)}

    module = Encoder()
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    return path


def test_hub_image_encoder_from_a_local_savedmodel_round_trips(tmp_path):
    handle = _export_image_encoder(str(tmp_path / "image_encoder"))
    model = registry.build_model("hub_image", {"handle": handle, "dense_units": 8}, **DATA_ARGS)
    inputs = {"poster": np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")}
    targets = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    assert_trains_and_round_trips(model, inputs, targets, tmp_path, allow_external_code=True)


def test_hub_text_encoder_takes_raw_strings_and_fuses(tmp_path):
    handle = _export_text_encoder(str(tmp_path / "text_encoder"))
    model = registry.build_model("fusion", {"text_branch": "hub_text", "text_params": {"handle": handle},
                                            "fusion_units": 8}, **DATA_ARGS)
    inputs = {"poster": np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32"),
              "overview": np.array(["a short plot", "", "another plot here", "x"], dtype=object)}
    targets = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    assert_trains_and_round_trips(model, inputs, targets, tmp_path, allow_external_code=True)


def test_saved_hub_model_needs_explicit_permission_to_load(tmp_path):
    from mmgenre.models.saving import load_model

    handle = _export_image_encoder(str(tmp_path / "image_encoder"))
    model = registry.build_model("hub_image", {"handle": handle}, **DATA_ARGS)
    model.save(tmp_path / "hub.keras")
    with pytest.raises(ValueError, match="layer type.s. TFSMLayer whose loading runs code.*"
                                         "--allow-external-code"):
        load_model(str(tmp_path / "hub.keras"))


def test_bad_handles_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        registry.build_model("hub_image", {"handle": str(tmp_path)}, **DATA_ARGS)
    monkeypatch.setattr("mmgenre.models.hub.host_reachable", lambda *a, **k: False)
    with pytest.raises(ValueError, match="tfhub.dev is unreachable"):
        registry.build_model("hub_text", {"handle": "https://tfhub.dev/google/nnlm-en-dim50/2"},
                             **DATA_ARGS)


def test_frozen_backbone_features_are_cached_and_reused(synthetic_dir, tmp_path, capsys):
    from conftest import tiny_config

    from mmgenre.models.saving import load_model
    from mmgenre.training.trainer import train_and_evaluate

    handle = _export_image_encoder(str(tmp_path / "image_encoder"))
    cache_dir = str(tmp_path / "features")
    train = {"epochs": 3, "cache_features": True, "feature_cache_dir": cache_dir}
    cfg = tiny_config(synthetic_dir, "hub_image", {"handle": handle, "dense_units": 16}, train=train)
    train_and_evaluate(cfg, str(tmp_path / "run1"), verbose=0, allow_external_code=True)
    assert "caching backbone features" in capsys.readouterr().out
    assert len([f for f in os.listdir(cache_dir) if f.endswith(".npy")]) == 2  # train and dev
    assert pd.read_csv(tmp_path / "run1" / "history.csv")["epoch"].tolist() == [0, 1, 2]
    model = load_model(str(tmp_path / "run1" / "best.keras"), allow_external_code=True)
    assert "poster" in model.input  # the saved model is the full one, not the head
    # Another run with the same data and model settings trains from the cache.
    train_and_evaluate(cfg, str(tmp_path / "run2"), verbose=0, allow_external_code=True)
    assert "caching backbone features" not in capsys.readouterr().out


def test_second_phase_fine_tunes_after_the_first(synthetic_dir, tmp_path, monkeypatch):
    """The trainer's phase two, with a cheap model given a fine-tuning hook."""
    import dataclasses

    from conftest import tiny_config

    from mmgenre.training.trainer import train_and_evaluate

    calls = []
    spec = registry.get("cnn")
    monkeypatch.setitem(registry._REGISTRY, "cnn", dataclasses.replace(
        spec, fine_tune=lambda model, blocks: calls.append((model.name, blocks))))
    cfg = tiny_config(synthetic_dir, "cnn", train={"epochs": 2, "fine_tune_epochs": 1,
                                                   "fine_tune_blocks": 2})
    train_and_evaluate(cfg, str(tmp_path / "run"), verbose=0)
    assert calls == [("cnn", 2)]
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [0, 1, 2]


def test_resnet_fine_tuning_hook_unfreezes_only_the_last_stage():
    model = registry.build_model("resnet", {"weights": None, "dense_units": 8}, **DATA_ARGS)
    assert not model.get_layer("backbone").trainable_weights
    registry.get("resnet").fine_tune(model, 1)
    trainable = {w.path for w in model.get_layer("backbone").trainable_weights}
    assert trainable and all("conv5_" in p and "_bn" not in p for p in trainable), sorted(trainable)[:4]


def test_caching_a_trainable_backbone_is_refused(synthetic_dir, tmp_path):
    from conftest import tiny_config

    from mmgenre.training.trainer import train_and_evaluate

    cfg = tiny_config(synthetic_dir, "cnn", train={"cache_features": True})
    with pytest.raises(ValueError, match="cache_features needs a frozen backbone"):
        train_and_evaluate(cfg, str(tmp_path / "run"), verbose=0)
