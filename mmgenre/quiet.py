"""Import TensorFlow without its start-up noise on machines without a GPU.

TensorFlow's C++ core prints lines before its logging is configured ("All log
messages before absl::InitializeLog() ...", oneDNN notes, "Could not find cuda
drivers", "failed call to cuInit"); TF_CPP_MIN_LOG_LEVEL cannot reach those
written before logging starts, so standard error is pointed at /dev/null while
TensorFlow and Keras load, then restored. A failed import is retried loudly so
its real error shows. ``MMGENRE_TF_LOGS=1`` keeps every line.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    if os.environ.get("MMGENRE_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import keras  # noqa: F401
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # probes CUDA now, silently
            except Exception:
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import tensorflow  # noqa: F401  (re-raises, loudly, whatever failed above)
