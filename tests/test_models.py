import numpy as np
import pytest

from helpers import assert_trains_and_round_trips
from mmgenre.models import registry

DATA_ARGS = dict(num_genres=4, image_size=(32, 32), vocab_size=50, sequence_length=12)


def _inputs(spec, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {}
    if "poster" in spec.modalities:
        inputs["poster"] = rng.random((batch, 32, 32, 3)).astype("float32")
    if "overview" in spec.modalities:
        inputs["overview"] = rng.integers(0, 50, (batch, 12)).astype("int64")
    return inputs


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_model_trains_and_round_trips(name, tmp_path):
    spec = registry.get(name)
    model = registry.build_model(name, {}, task="multilabel", **DATA_ARGS)
    assert model.get_layer("embedding") is not None  # fusion reuses it
    assert model.get_layer("genres").output.shape == (None, 4)
    targets = (np.random.default_rng(1).random((4, 4)) > 0.5).astype("float32")
    assert_trains_and_round_trips(model, _inputs(spec), targets, tmp_path)


def test_single_label_head_is_softmax():
    model = registry.build_model("cnn", {}, task="single", **DATA_ARGS)
    probs = model.predict(_inputs(registry.get("cnn")), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_model_and_param_are_named():
    with pytest.raises(ValueError, match=r"unknown model 'transformer'; registered models: \["):
        registry.get("transformer")
    with pytest.raises(ValueError, match=r"model 'cnn' has no hyperparameter 'units'; valid: \["):
        registry.build_model("cnn", {"units": 3}, **DATA_ARGS)
    with pytest.raises(ValueError, match="derived from the data"):
        registry.check_params("lstm", {"vocab_size": 3})


def test_bad_hyperparameter_value_is_quoted():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        registry.build_model("lstm", {"dropout": 1.5}, **DATA_ARGS)
