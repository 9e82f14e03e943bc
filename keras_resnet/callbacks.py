"""Callbacks of general use: clean stops on signals and NaNs, a plateau schedule that resumes.

Every callback that acts per batch is ``async_safe``: Keras then runs the batch callbacks (and
the progress bar) on a thread pool after each step has been dispatched, so the host never
waits for the device inside an epoch. Keras re-raises their exceptions in the training loop
and waits for all of them before ``on_epoch_end``.
"""

from __future__ import annotations

import math
import signal
import threading

import keras


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: finished epochs are saved; ``signum`` sets the exit code."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal(keras.callbacks.Callback):
    """Within ``with`` it turns Ctrl-C and SIGTERM (a scheduler, ``kill``) into ``Interrupted``.

    The handler raises at once, but Keras swallows exceptions raised while it converts a batch's
    logs (a bare ``except``), which is where a step spends most of its wait; so the handler also
    leaves a flag that this callback raises from at the next batch or epoch end. SIGINT is set
    explicitly because a shell starts background jobs with it ignored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.async_safe = True
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.signum = signum
        raise Interrupted(signum)

    def _raise_if_signalled(self):
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, batch, logs=None):
        self._raise_if_signalled()

    def on_epoch_end(self, epoch, logs=None):
        self._raise_if_signalled()


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, and remember which it was.

    Checkpoint ignores that epoch, so the last good checkpoint and best.keras stay as they were.
    Batches are checked on Keras's thread pool, possibly out of order, so the earliest bad one
    is kept; training stops a step or two after it, within the same (discarded) epoch.
    """

    def __init__(self):
        super().__init__()
        self.async_safe = True
        self.stopped_at: tuple[int, int] | None = None  # (epoch, batch), both 1-based
        self._lock = threading.Lock()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not math.isfinite(float(logs["loss"])):
            with self._lock:
                at = (self.epoch + 1, batch + 1)
                self.stopped_at = min(at, self.stopped_at or at)
            self.model.stop_training = True


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive a restart (Keras resets them in on_train_begin)."""

    def __init__(self, state: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.initial_state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.initial_state:
            self.wait = self.initial_state["wait"]
            self.best = self.initial_state["best"]
            self.cooldown_counter = self.initial_state["cooldown_counter"]

    def state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "cooldown_counter": self.cooldown_counter}
