"""Loading .keras files safely: Keras safe mode unless the user allows external code.

A .keras file can hold layers whose loading runs arbitrary Python (a ``Lambda``
layer's pickled function) or another SavedModel's graph (``TFSMLayer``, the
TF-Hub wrapper). mmgenre loads every model file, its own run folders included,
with Keras' ``safe_mode=True`` unless the user passed ``--allow-external-code``:
a run folder someone handed you is data, not a program.
"""

from __future__ import annotations

import json
import warnings
import zipfile

import keras

from mmgenre.models.layers import OutdatedRunError

# Layer classes whose deserialisation runs code from the file (Keras refuses them in safe mode).
CODE_LAYERS = ("Lambda", "TFSMLayer")
RETRAIN = ("retrain it with this version (mmgenre train --config RUN/config.yaml --workdir NEW_DIR), "
           "or load it with the mmgenre that trained it")


def layer_classes(path: str) -> list:
    """Class names of every layer in a .keras file's config, read without loading it."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                found.append(node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def load_model(path: str, allow_external_code: bool = False):
    """Loads a .keras file with mmgenre's custom layers registered.

    Args:
        path: the .keras file.
        allow_external_code: load with Keras safe mode off. Only the user may
            say so (CLI ``--allow-external-code``); library code never does.

    Raises:
        ValueError naming the file and the layer types that would run code,
        or saying the file is unreadable (truncated or not a .keras file).
    """
    import mmgenre.encoders.mpnet_backbone  # noqa: F401  registers the MPNet backbone, tokenizer and layers
    from mmgenre.models import registry

    registry.names()  # imports every model module, registering its layers
    try:
        with warnings.catch_warnings():
            # mmgenre compiles a fresh optimizer after loading; the saved one is not needed.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.models.load_model(path, safe_mode=not allow_external_code)
    except OutdatedRunError as err:
        raise OutdatedRunError(f"{path} is {err}, which this mmgenre no longer loads; {RETRAIN}") from None
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err).lower():
            unsafe = sorted({c for c in layer_classes(path) if c in CODE_LAYERS}) or ["unknown"]
            raise ValueError(
                f"{path} holds layer type(s) {', '.join(unsafe)} whose loading runs code stored "
                "in the file; if you trust it, rerun with --allow-external-code "
                "(allow_external_code=True in Python)") from None
        raise
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is not a readable .keras file ({err}); it was probably "
                         "cut short by a kill: delete it or rerun the training") from None
    except TypeError as err:  # a layer class this mmgenre does not know
        first = str(err).split(". ")[0]
        raise OutdatedRunError(f"{path} holds a layer this version of mmgenre cannot build "
                               f"({first}); {RETRAIN}") from None
