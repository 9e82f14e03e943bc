"""Timing Keras on JAX: a per-step clock for ``model.fit``, and what the device reports."""

from __future__ import annotations

import itertools
import statistics
import time

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import jax
import jaxlib
import keras
import numpy as np

from benchmarks.common import max_rss_bytes


class StepClock(keras.callbacks.Callback):
    """Wall-clock time when each step (or execution of several) begins and ends.

    It is ``async_safe``: Keras calls ``on_*_batch_end`` from a thread pool after converting
    the step's logs to Python floats, which waits for the device: the end times are when the
    device finished that step, and the training loop itself is never held up.
    """

    def __init__(self):
        super().__init__()
        self.async_safe = True
        self.begin: dict[int, float] = {}
        self.end: dict[int, float] = {}

    def on_train_batch_begin(self, batch, logs=None):
        self.begin.setdefault(batch, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        self.end[batch] = time.perf_counter()

    def on_test_batch_begin(self, batch, logs=None):
        self.begin.setdefault(batch, time.perf_counter())

    def on_test_batch_end(self, batch, logs=None):
        self.end[batch] = time.perf_counter()


def fit_timing(clock: StepClock, warmup: int, steps: int, batch_size: int) -> dict:
    """First-step seconds, steady-state images/s and the median step, from a StepClock."""
    ends = sorted(clock.end.items())
    start = clock.end[warmup - 1]
    stop = clock.end[warmup + steps - 1]
    timed = [(b, t) for b, t in ends if b >= warmup - 1]
    per_step = [(t1 - t0) / (b1 - b0) for (b0, t0), (b1, t1) in itertools.pairwise(timed)]
    return {
        "first_step_s": ends[0][1] - clock.begin[0],
        "train_seconds": stop - start,
        "train_images_per_s": steps * batch_size / (stop - start),
        "train_step_ms": 1000 * (stop - start) / steps,
        "train_step_ms_median": 1000 * statistics.median(per_step) if per_step else None,
    }


def device_info() -> dict:
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "count": len(jax.devices()),
    }


def peak_memory() -> tuple[int, str]:
    """The device's peak bytes where it counts them (GPUs), else this process's max RSS."""
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return max_rss_bytes(), "max_rss_cpu"


def versions() -> dict:
    return {
        "keras": keras.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }
