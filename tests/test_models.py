import numpy as np
import pytest
from helpers import assert_trains_and_round_trips, outputs

from mmgenre.models import registry
from mmgenre.models.heads import backbone_and_head, embedding_layer

DATA_ARGS = dict(num_genres=4, image_size=(32, 32), vocab_size=50, sequence_length=12)


def _inputs(spec, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {}
    if "poster" in spec.modalities:
        inputs["poster"] = rng.random((batch, 32, 32, 3)).astype("float32")
    if "overview" in spec.modalities:
        inputs["overview"] = rng.integers(0, 50, (batch, 12)).astype("int64")
    return inputs


# resnet and hub models need weight files or SavedModels: tests/test_pretrained.py; the
# pretrained encoder families need prepared encoders: tests/test_encoders.py.
# Non-default options that add layers, so their serialization is covered too.
PARAMS = {"lstm": {"word_dropout": 0.2}, "bag_of_words": {"bigram_buckets": 16}}


def test_bag_of_words_counts_in_vocabulary_words_and_hashed_bigrams():
    from mmgenre.models.bag_of_words import BagOfWords

    ids = np.array([[2, 3, 2, 3, 0, 0], [1, 5, 6, 0, 0, 0]])
    counts = np.expm1(np.asarray(BagOfWords(10, bigram_buckets=7)(ids)))
    assert counts.shape == (2, 17)
    assert counts[0, :10].tolist() == [0, 0, 2, 2, 0, 0, 0, 0, 0, 0]  # padding not counted
    assert sorted(counts[0, 10:][counts[0, 10:] > 0].round().tolist()) == [1, 2]  # (3,2) once, (2,3) twice
    assert counts[1, 10:].round().sum() == 1  # only (5, 6): pairs with OOV (1) or padding drop


# Pretrained and hub models have their own modules (test_pretrained, test_encoders); the
# cached-feature families train their heads on cached embeddings (test_probe, test_encoder_head).
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in registry.names() if n not in (
    "resnet", "hub_image", "hub_text", "image_encoder", "text_encoder", "linear_probe",
    "encoder_head", "score_fusion")])
def test_every_registered_model_trains_and_round_trips(name, tmp_path):
    spec = registry.get(name)
    model = registry.build_model(name, PARAMS.get(name, {}), task="multilabel", **DATA_ARGS)
    if name != "fusion":  # a backbone and the shared head: the head on its features is the model
        backbone, head = backbone_and_head(model)
        np.testing.assert_allclose(outputs(head, outputs(backbone, _inputs(spec))),
                                   outputs(model, _inputs(spec)), rtol=1e-5, atol=1e-6)
    targets = (np.random.default_rng(1).random((4, 4)) > 0.5).astype("float32")
    assert_trains_and_round_trips(model, _inputs(spec), targets, tmp_path)


def test_single_label_head_is_softmax():
    model = registry.build_model("cnn", {}, task="single", **DATA_ARGS)
    probs = outputs(model, _inputs(registry.get("cnn")))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_batch_predictor_traces_once_for_every_batch_size_and_matches_predict_on_batch():
    import tensorflow as tf

    from mmgenre.models.predict_step import batch_predictor

    spec = registry.get("fusion")
    model = registry.build_model("fusion", {}, **DATA_ARGS)
    x = _inputs(spec, batch=10)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)  # batches of 4, 4 and 2
    predict = batch_predictor(model, ds.element_spec)
    got = np.concatenate([np.asarray(predict(batch)) for batch in ds])
    np.testing.assert_array_equal(got, np.concatenate([model.predict_on_batch(b) for b in ds]))
    assert predict.experimental_get_tracing_count() == 1
    assert batch_predictor(model, ds.element_spec) is predict  # kept with the model


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
    with pytest.raises(ValueError, match=r"word_dropout must be in \[0, 1\), got -0.1"):
        registry.build_model("lstm", {"word_dropout": -0.1}, **DATA_ARGS)


# (cnn, lstm, concat) is the default fusion, covered by the registry-wide test above.
@pytest.mark.slow
@pytest.mark.parametrize("image_branch,text_branch,method", [
    ("cnn", "bilstm_attention", "gmu"),
])
def test_fusion_combinations_train_and_round_trip(image_branch, text_branch, method, tmp_path):
    params = {"image_branch": image_branch, "text_branch": text_branch, "method": method,
              "modality_dropout": 0.2, "fusion_units": 8}
    model = registry.build_model("fusion", params, task="multilabel", **DATA_ARGS)
    targets = (np.random.default_rng(1).random((4, 4)) > 0.5).astype("float32")
    reloaded = assert_trains_and_round_trips(model, _inputs(registry.get("fusion")), targets, tmp_path)
    assert reloaded.get_layer("head").get_layer("poster_or_stand_in").rate == 0.2


def test_fusion_accepts_a_missing_modality():
    model = registry.build_model("fusion", {"fusion_units": 8}, **DATA_ARGS)
    inputs = _inputs(registry.get("fusion"))
    both = outputs(model, inputs)
    no_poster = outputs(model, {**inputs, "poster": np.zeros_like(inputs["poster"])})
    no_text = outputs(model, {**inputs, "overview": np.zeros_like(inputs["overview"])})
    assert np.isfinite(no_poster).all() and np.isfinite(no_text).all()
    # With the poster absent the output no longer depends on which poster it was.
    other = {**inputs, "poster": np.zeros_like(inputs["poster"])}
    np.testing.assert_allclose(outputs(model, other), no_poster)
    assert not np.allclose(both, no_poster)


def test_missing_modality_reads_a_presence_flag_and_old_fusions_are_refused(tmp_path):
    """Fusions cache a Presence flag with the backbone features; a fusion saved before (its
    MissingModality read the raw input) is refused in one line that says to retrain, not
    loaded with the raw input read as a flag."""
    import json
    import zipfile

    import keras

    from mmgenre.models.layers import MissingModality, OutdatedRunError, Presence
    from mmgenre.models.saving import load_model

    embedding = np.ones((4, 3), "float32")
    for raw in (np.array(["a plot", "", "x", ""], dtype=object),
                np.array([[3, 0], [0, 0], [1, 2], [0, 0]], "int64"),
                np.stack([np.ones((2, 2, 3)), np.zeros((2, 2, 3))] * 2).astype("float32")):
        flag = np.asarray(Presence()(raw))
        assert flag.shape == (4, 1) and flag[:, 0].tolist() == [1, 0, 1, 0]
    layer = MissingModality()
    layer.build([(4, 3), (4, 1)])
    layer.stand_in.assign([5.0, 6.0, 7.0])
    np.testing.assert_array_equal(np.asarray(layer([embedding, flag])),
                                  [[1, 1, 1], [5, 6, 7], [1, 1, 1], [5, 6, 7]])

    features, present = keras.Input((3,)), keras.Input((1,))
    keras.Model([features, present], MissingModality(0.1, name="m")([features, present])).save(
        tmp_path / "new.keras")
    assert load_model(str(tmp_path / "new.keras")).get_layer("m").rate == 0.1
    with zipfile.ZipFile(tmp_path / "new.keras") as archive:
        items = {n: archive.read(n) for n in archive.namelist()}
    items["config.json"] = json.dumps(json.loads(items["config.json"])).replace(
        '"rate": 0.1', '"rate": 0.1, "from_presence": false').encode()
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    with pytest.raises(OutdatedRunError, match=r"old.keras is a fusion saved before presence "
                                               r"flags .* retrain it with this version"):
        load_model(str(tmp_path / "old.keras"))


def test_fusion_rejects_incompatible_branches_and_foreign_weights(tmp_path):
    with pytest.raises(ValueError, match="image_branch must be a poster-only model; 'lstm' takes"):
        registry.build_model("fusion", {"image_branch": "lstm"}, **DATA_ARGS)
    with pytest.raises(ValueError, match="fusion method must be one of"):
        registry.build_model("fusion", {"method": "sum"}, **DATA_ARGS)
    lstm = registry.build_model("lstm", {}, **DATA_ARGS)
    lstm.save(tmp_path / "lstm.keras")
    with pytest.raises(ValueError, match=r"lstm.keras: layer 'embedding' does not fit model 'cnn'"):
        registry.build_model("fusion", {"image_weights": str(tmp_path / "lstm.keras")}, **DATA_ARGS)


def test_pretrained_layers_transfer_across_genre_sets(tmp_path):
    """A branch trained on other genres (posters-movielens) initialises every layer but the head."""
    from mmgenre.models.weights import load_pretrained, named_layers

    source = registry.build_model("compact_resnet", {"widths": [8, 16]},
                                  **{**DATA_ARGS, "num_genres": 7})
    source.save(tmp_path / "source.keras")
    target = registry.build_model("compact_resnet", {"widths": [8, 16]}, **DATA_ARGS)
    layers, trained = named_layers(target), named_layers(source)
    head_before = layers["genres"].get_weights()[0].copy()
    copied = load_pretrained(target, str(tmp_path / "source.keras"), frozen=True)
    assert "genres" not in copied and {"stem_conv", "embedding"} <= set(copied)
    for name in copied:
        for got, want in zip(layers[name].get_weights(), trained[name].get_weights()):
            np.testing.assert_array_equal(got, want)
        assert not layers[name].trainable
    np.testing.assert_array_equal(layers["genres"].get_weights()[0], head_before)
    assert layers["genres"].trainable
    with pytest.raises(ValueError, match="pretrained weights not found: .*missing/ \\(a run folder"):
        load_pretrained(target, str(tmp_path / "missing") + "/")


def test_flat_run_folders_from_before_the_head_split_still_transfer(tmp_path):
    """best.keras files saved when "embedding" / "genres" were top-level layers still initialise
    the nested head by layer name, and a fusion takes the lstm's LSTM as its branch embedding."""
    import keras

    from mmgenre.models.weights import load_pretrained, named_layers

    poster = keras.Input(shape=(32, 32, 3), name="poster")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(poster)
    x = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(name="pool1")(x))
    x = keras.layers.Dense(5, activation="relu", name="embedding")(x)
    flat = keras.Model({"poster": poster}, keras.layers.Dense(7, activation="sigmoid", name="genres")(
        keras.layers.Dropout(0.5, name="dropout")(x)), name="cnn")
    flat.save(tmp_path / "flat.keras")
    target = registry.build_model("cnn", {"filters": [4], "dense_units": 5}, **DATA_ARGS)
    assert sorted(load_pretrained(target, str(tmp_path / "flat.keras"))) == ["conv1", "embedding"]
    np.testing.assert_array_equal(named_layers(target)["embedding"].get_weights()[0],
                                  flat.get_layer("embedding").get_weights()[0])
    lstm = registry.build_model("lstm", {"units": 6}, **DATA_ARGS)
    backbone, head = backbone_and_head(lstm)
    assert embedding_layer(head) is None and embedding_layer(backbone_and_head(target)[1]) is not None
    ids = _inputs(registry.get("lstm"))
    np.testing.assert_array_equal(  # the backbone's output is the LSTM's
        outputs(backbone, ids),
        outputs(keras.Model(lstm.inputs, lstm.get_layer("embedding").output), ids))


def test_attention_ignores_padding_and_sums_to_one():
    from mmgenre.models.bilstm_attention import attention_weights

    model = registry.build_model("bilstm_attention", {}, **DATA_ARGS)
    ids = np.zeros((2, 12), "int64")
    ids[0, :5] = [3, 4, 5, 6, 7]
    ids[1, :2] = [8, 9]
    weights = attention_weights(model, ids)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert (weights[0, 5:] == 0).all() and (weights[1, 2:] == 0).all()


def test_the_readme_extension_example_builds_a_cacheable_family(monkeypatch, tmp_path):
    """The README's "Extending mmgenre" code, run as written: a registered family whose frozen
    backbone can be cached and whose head model trains the whole model."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                   if "my_poster_model" in block)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # no leak to other tests
    exec(compile(example, "README.md", "exec"), {})
    model = registry.build_model("my_poster_model", {"filters": 4}, **DATA_ARGS)
    backbone, head = backbone_and_head(model)
    poster = _inputs(registry.get("my_poster_model"))
    np.testing.assert_allclose(outputs(head, outputs(backbone, poster)),
                               outputs(model, poster), rtol=1e-6)
    targets = (np.random.default_rng(1).random((4, 4)) > 0.5).astype("float32")
    assert_trains_and_round_trips(model, poster, targets, tmp_path)


def test_only_a_head_behind_boundary_layers_splits_off():
    """An encoder head's inputs are named by feature, and its TF-IDF vectorizer is a layer
    "tfidf": not a backbone output to cache (it trains through its own solver)."""
    head_model = registry.build_model("encoder_head", {"features": ["tfidf"]}, num_genres=3)
    with pytest.raises(ValueError, match="has no head model fed by its backbone's boundary"):
        backbone_and_head(head_model)
