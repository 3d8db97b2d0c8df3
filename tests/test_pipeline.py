import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mmgenre.data import pipeline
from mmgenre.data.labels import GenreVocabulary
from mmgenre.data.records import load_records
from mmgenre.data.validate import validate


@pytest.fixture(scope="module")
def synthetic_table(synthetic_dir):
    table, _ = validate(load_records(synthetic_dir), show_progress=False)
    return table


def test_read_poster_is_the_same_eagerly_and_in_tf_data(synthetic_table):
    path = synthetic_table["poster"][0]
    eager = pipeline.read_poster(path, (20, 16)).numpy()
    in_graph = next(iter(tf.data.Dataset.from_tensors(path).map(
        lambda p: pipeline.read_poster(p, (20, 16))))).numpy()
    np.testing.assert_array_equal(eager, in_graph)
    assert eager.shape == (20, 16, 3) and eager.dtype == np.uint8


def test_augment_keeps_shape_and_range():
    image = tf.random.uniform((32, 24, 3))
    out = pipeline.augment_poster(image).numpy()
    assert out.shape == (32, 24, 3) and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, image.numpy())


@pytest.mark.parametrize("cache", ["memory", "none", "file"])
def test_paired_pipeline_shapes_dtypes_and_ranges(synthetic_table, tmp_path, cache):
    vocab = GenreVocabulary.from_train(synthetic_table, 3)
    train = synthetic_table[synthetic_table["split"] == "train"].reset_index(drop=True)
    vectorizer = pipeline.build_vectorizer(train["overview"], max_tokens=200, sequence_length=24)
    targets = vocab.multi_hot(train["genres"])
    ds = pipeline.make_dataset(
        train, targets, ("poster", "overview"), (32, 32), vectorizer, batch_size=8, training=True,
        augment=True, cache=str(tmp_path / "cache") if cache == "file" else cache)
    for _ in range(2):  # second pass reads the cache
        x, y = next(iter(ds))
        assert set(x) == {"poster", "overview"}
        assert x["poster"].shape == (8, 32, 32, 3) and x["poster"].dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(x["poster"])) and float(tf.reduce_max(x["poster"])) <= 1.0
        assert x["overview"].shape == (8, 24) and x["overview"].dtype == tf.int64
        assert y.shape == (8, len(vocab)) and y.dtype == tf.float32
    if cache == "file":
        assert any(name.startswith("cache") for name in os.listdir(tmp_path))


def test_unimodal_pipeline_holds_only_its_input(synthetic_table):
    rows = synthetic_table.head(10)
    ds = pipeline.make_dataset(rows, np.zeros((10, 2), np.float32), ("poster",), (16, 16), batch_size=4)
    x, _ = next(iter(ds))
    assert set(x) == {"poster"}


def test_vectorizer_sees_only_train_text():
    table = pd.DataFrame({"overview": ["a heist in the city", "zebracorn appears"],
                          "split": ["train", "test"]})
    vectorizer = pipeline.build_vectorizer(table[table["split"] == "train"]["overview"], 50, 6)
    vocabulary = vectorizer.get_vocabulary()
    assert "heist" in vocabulary and "zebracorn" not in vocabulary
    ids = vectorizer(tf.constant(["zebracorn heist"])).numpy()[0]
    assert ids[0] == 1 and ids[1] == vocabulary.index("heist") and ids[2:].tolist() == [0] * 4


def test_vectorizer_round_trips_through_json(tmp_path):
    vectorizer = pipeline.build_vectorizer(["one two three", "two three"], 50, 5)
    pipeline.save_vectorizer(vectorizer, str(tmp_path / "v.json"))
    restored = pipeline.load_vectorizer(str(tmp_path / "v.json"))
    text = tf.constant(["three two one four"])
    np.testing.assert_array_equal(vectorizer(text).numpy(), restored(text).numpy())


def test_rows_without_the_modality_are_refused():
    rows = pd.DataFrame({"overview": ["fine", None]})
    with pytest.raises(ValueError, match="without a usable overview"):
        pipeline.make_dataset(rows, np.zeros((2, 1), np.float32), ("overview",),
                              vectorizer=pipeline.build_vectorizer(["fine"], 10, 3))
