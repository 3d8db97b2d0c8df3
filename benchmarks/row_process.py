"""One row of a benchmark (the rows' embeddings, a training run, a classical baseline, a score
fusion), run in a fresh process or in this one, with the long steps it timed and its peak memory.

Why a process per row (accuracy.py --row-processes): TensorFlow's CPU allocator keeps the
memory a process once used (on this machine an MPNet load freed again left 0.6 GB resident), so
in one process each row starts where the largest before it peaked. Measured here on the
README's first command from cached embeddings: peak 2.67 GB in one process; with a process per
row (embeddings first, 4 MB mmap threshold) 2.14 GB for the largest, the parent holding about
0.1 GB (results/NOTES.md, "Memory"); a row's process costs about 14 s (importing TensorFlow and
mmgenre: 7.5 s). This module is imported by name in the row's process, so it imports nothing
heavy at the top.
"""

from __future__ import annotations

import ctypes
import sys

from mmgenre import progress


class RowResult:
    """What a row's process sends back: its return value, the long steps it timed and, from a
    process of its own, its peak resident memory in GB (None in the caller's process, whose
    peak holds every earlier row's)."""

    def __init__(self, value, steps, peak_gb=None):
        self.value, self.steps, self.peak_gb = value, steps, peak_gb


def _in_this_process(function, *args):
    """``function(*args)`` with the long steps it timed (the body of a row's process)."""
    from mmgenre.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    first = len(progress.STEPS)
    value = function(*args)
    return RowResult(value, list(progress.STEPS[first:]))


def in_row_process(separate: bool, function, *args):
    """``function(*args)`` (a module-level function an importable module defines) in a fresh
    process when ``separate``, else here after freeing the previous row's models; returns a
    RowResult."""
    if not separate:
        release_models()
        return _in_this_process(function, *args)
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork would copy the parent's state
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(_in_row_process, function, *args).result()
        except concurrent.futures.process.BrokenProcessPool:
            raise SystemExit(f"{function.__name__}: the row's process ended before its result "
                             "(killed, out of memory?); finished rows are kept, a rerun resumes") from None


# glibc's malloc serves blocks from 4 MB up from mmap, so they go back to the system when freed
# (its default threshold grows to 32 MB and keeps freed blocks below it on the heap). Measured
# here on the encoder head's row of the README's first command: peak 2.45 -> 2.03 GB, the same
# scores (1 MB: 2.02 GB, and the row ran slower).
MMAP_THRESHOLD = 4 * 1024 * 1024
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def _in_row_process(function, *args):
    """The body of a row's process: ``_in_this_process``, then joblib's idle workers stopped.
    The probes' solver leaves them running for reuse (300 s), and a process waits for its
    children when it ends: every row waited five minutes before its report."""
    import resource

    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    result = _in_this_process(function, *args)
    result.peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    if reusable is not None and getattr(reusable, "_executor", None) is not None:
        reusable._executor.shutdown(wait=True)
    return result


def release_models():
    """Frees the previous row's models and embedders (rows in one process): Keras keeps every
    model a process built, and each row over MPNet added about 0.4 GB (four MPNet probes in
    one process peaked at 3.3 GB); later rows read the embedding cache, so the embedders
    (MPNet: about 0.8 GB) go too and a row that embeds new inputs loads its own again."""
    if "keras" not in sys.modules:
        return
    import keras

    from mmgenre.encoders.loading import release_loaded_encoders

    keras.backend.clear_session(free_memory=True)
    release_loaded_encoders()  # the encoders, and freed heap pages handed back


def lists_encoders(cfg) -> bool:
    """Whether a row's config names a pretrained encoder among its features (read without
    importing TensorFlow: a model's default features are not looked up here)."""
    from mmgenre.encoders import sources

    return any(f in sources.KNOWN for f in cfg.model.params.get("features", ()))


def embed_row(cfgs):
    """Fills the embedding cache for every encoder ``cfgs``' rows read, on the rows each one
    reads, so that no row's process embeds. Why a process of its own: a row that embeds holds
    the embedder's MPNet and then its graph's (oneDNN keeps the first copy's memory): from an
    empty cache the MPNet row peaked at 2.66 GB, against 1.89 GB from cached embeddings."""
    from mmgenre.data.prepare import prepare_data
    from mmgenre.encoders import sources
    from mmgenre.encoders.loading import release_loaded_encoders
    from mmgenre.models import registry
    from mmgenre.models.quantized import precision_of
    from mmgenre.training.probe_features import encoder_block

    wanted = []  # (spec, cfg, its encoders, their precision)
    for cfg in cfgs:
        spec = registry.get(cfg.model.name, cfg.model.params)
        params = spec.params(cfg.model.params)
        encoders = [f for f in params.get("features", ()) if f in sources.KNOWN]
        if encoders:
            wanted.append((spec, cfg, encoders, precision_of(params)))
    sources.prepare_known([e for _, _, encoders, _ in wanted for e in encoders])
    for spec, cfg, encoders, precision in wanted:
        prepared = prepare_data(cfg.data, spec, show_progress=False)
        for encoder in encoders:
            for rows, _ in prepared.splits.values():  # a cached block is only read
                encoder_block(encoder, rows, precision)
            release_loaded_encoders()


def train_row(cfg, run_dir):
    """(train_and_evaluate's results, the inputs the row's model reads)."""
    from mmgenre.models import registry
    from mmgenre.training.trainer import train_and_evaluate

    return (train_and_evaluate(cfg, run_dir),
            set(registry.get(cfg.model.name, cfg.model.params).modalities))


def classical_row(data_cfg, kind, out, seed, thresholds):
    """(run_classical's results, the inputs the baseline reads)."""
    from classical import kind_modalities, run_classical

    return run_classical(data_cfg, kind, out, seed, thresholds), set(kind_modalities(kind))


def score_fusion_row(run_dirs, out, data_cfg, thresholds, space, weighting="auto"):
    from mmgenre.training.late_fusion import run_score_fusion

    return run_score_fusion(run_dirs, out, data_cfg, thresholds, weighting=weighting, space=space)
