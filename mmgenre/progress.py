"""A dependency-free progress bar for long loops outside Keras (validation, feature caching),
and a record of how long the long steps took (encoder preparation, embedding, saving).

Keras' own Progbar would pull in TensorFlow, which ``mmgenre validate`` does not need.
On a terminal the bar redraws in place; in logs it prints at every 25%.
"""

from __future__ import annotations

import contextlib
import sys
import time

# (step, seconds) of this process's long steps, in order: benchmarks/accuracy.py reads the
# ones each row ran to say which step took how long.
STEPS: list = []


@contextlib.contextmanager
def timed(step: str):
    """Appends (``step``, seconds the block took) to ``STEPS`` when the block finishes."""
    start = time.time()
    yield
    STEPS.append((step, round(time.time() - start, 1)))


def progress(iterable, total: int, desc: str, stream=None, unit: str | None = None,
             per_step: int = 1, items: int | None = None):
    """Yields from ``iterable`` while drawing ``desc [#####     ] n/total``.

    With ``unit`` (e.g. "movies": each step is ``per_step`` of them, ``items`` in all) the
    line also says how many per second and how long is left.
    """
    stream = stream or sys.stderr
    interactive = stream.isatty()
    start = time.time()
    step = max(1, total // 4)
    done = 0
    for item in iterable:
        yield item
        done += 1
        if done == total or (interactive and done % max(1, total // 100) == 0) or (
            not interactive and done % step == 0
        ):
            filled = int(30 * done / max(total, 1))
            elapsed = time.time() - start
            line = (f"{desc} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total} "
                    f"{elapsed:.1f}s")
            if unit:
                finished = min(done * per_step, items or total * per_step)
                rate = finished / max(elapsed, 1e-9)
                left = ((items or total * per_step) - finished) / max(rate, 1e-9)
                line += f", {rate:.1f} {unit}/s, {left:.0f}s left"
            stream.write(("\r" + line) if interactive else (line + "\n"))
            if interactive and done == total:
                stream.write("\n")
            stream.flush()
