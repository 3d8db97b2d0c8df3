"""The one shared model test (build, run a train step, save, reload, same output), and a
loader that loads each file once within a test."""

import os

import keras
import numpy as np


def _raw_strings(inputs) -> bool:
    """Whether ``inputs`` hold raw strings: keras-hub's tokenizers take them only when traced."""
    arrays = inputs.values() if isinstance(inputs, dict) else [inputs]
    return any(np.asarray(a).dtype == object for a in arrays)


def outputs(model, inputs) -> np.ndarray:
    """``model``'s outputs on a tiny batch, called eagerly: ``predict`` would trace a function
    for each model (and for each reloaded copy), most of these tests' time on 2 cores. Raw
    strings still go through ``predict``."""
    if _raw_strings(inputs):
        return model.predict(inputs, verbose=0)
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def assert_trains_and_round_trips(model, inputs, targets, tmp_path, loss="binary_crossentropy",
                                  allow_external_code=False):
    """Runs one train step, then checks save/load gives identical predictions.

    Args:
        model: a built keras.Model taking the dict ``inputs``.
        inputs: dict of (batch, ...) arrays keyed by modality.
        targets: (batch, n_genres) targets.
    Returns:
        the reloaded model.
    """
    from mmgenre.models.saving import load_model

    # One step on 4 examples: eagerly it is cheaper than tracing the train step
    # (`python -m pytest -q tests/test_models.py`: 13.3 s against 25.1 s).
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=not _raw_strings(inputs))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(inputs, targets, epochs=1, batch_size=len(targets), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "a train step changed nothing"
    expected = outputs(model, inputs)
    assert expected.shape == targets.shape
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    reloaded = load_model(path, allow_external_code=allow_external_code)
    np.testing.assert_allclose(outputs(reloaded, inputs), expected, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    assert reloaded.count_params() == model.count_params()
    return reloaded


def load_each_file_once(monkeypatch) -> dict:
    """Within one test, ``saving.load_model`` loads each file once: a second reader of the
    same best.keras (batch prediction after evaluate, ``load_run`` after ``evaluate_run``)
    takes the model, and its traced inference step, that the first one loaded. A second load
    and trace cost up to 5 s for a graph over EfficientNet-Lite0. Returns {(path, mtime, size,
    arguments): model} of the loads made."""
    from mmgenre.models import saving

    loaded, load = {}, saving.load_model

    def load_once(path, *args, **kwargs):
        if not os.path.isfile(path):
            return load(path, *args, **kwargs)  # its own error
        # A load with other arguments (safe mode off) is another load.
        key = (path, os.path.getmtime(path), os.path.getsize(path), args, tuple(sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = load(path, *args, **kwargs)
        return loaded[key]

    monkeypatch.setattr(saving, "load_model", load_once)
    return loaded
