"""Callbacks of general use: clean stops on signals and NaNs, plateau schedules that resume.

Every callback that acts per batch is ``async_safe``: Keras then runs the batch callbacks (and
the progress bar) on a thread pool after each step has been dispatched, so the host never
waits for the device inside an epoch. Keras re-raises their exceptions in the training loop
and waits for all of them before ``on_epoch_end``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable

import keras

from keras_resnet.checks import is_int, is_number


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

    With ``exit_message`` (a function returning the text), a signal that arrives before the
    first training step has finished prints that text and ends the process at once with exit
    code 128 + signal number. That first step is JAX tracing and XLA compiling: an exception
    raised inside it unwinds through native code, which can crash the process (SIGSEGV) or
    leave XLA's thread pool to hang the interpreter's exit for minutes. Nothing is lost by
    ``os._exit`` there: no step of this ``fit`` has finished, and files are written atomically.
    A compile that holds no Python lock is still interrupted at once: the signal's number is
    also written to a pipe (``signal.set_wakeup_fd``) that a thread watches. Only for programs
    that may end on a signal, so a notebook keeps its kernel when left out.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, exit_message: Callable[[], str] | None = None):
        super().__init__()
        self.async_safe = True
        self.signum: int | None = None
        self.exit_message = exit_message
        self._previous: dict = {}
        self._stepped = False
        self._exiting = threading.Lock()
        self._wakeup: tuple[int, int] | None = None

    def _handle(self, signum, frame):
        # Only the first signal raises: a second one, while the first unwinds through native
        # code or a file is being saved, would abort the process or be printed and lost.
        first = self.signum is None
        self.signum = self.signum or signum
        if not self._stepped:
            self._exit(signum)
        if first:
            raise Interrupted(signum)

    def _exit(self, signum: int) -> None:
        if self.exit_message is None:
            return
        with self._exiting:  # a second caller (handler or watcher) waits here for the exit
            print(self.exit_message(), flush=True)
            sys.stderr.flush()
            os._exit(128 + signum)

    def _watch(self, read_fd: int) -> None:
        while data := os.read(read_fd, 1):
            if data[0] in self.SIGNALS and not self._stepped:
                self._exit(data[0])
        os.close(read_fd)

    def _raise_if_signalled(self):
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self):
        self._stepped = False
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
            if self.exit_message is not None:
                read_fd, write_fd = os.pipe()
                os.set_blocking(write_fd, False)
                signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
                self._wakeup = (read_fd, write_fd)
                threading.Thread(target=self._watch, args=(read_fd,), daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup[1])  # the watching thread reads the end of the pipe and ends
            self._wakeup = None

    def on_train_batch_end(self, batch, logs=None):
        self._stepped = True
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

    STATE_KEYS = ("wait", "best", "cooldown_counter")  # what ``state()`` saves

    def __init__(self, state: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.initial_state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.initial_state:
            for key in self.STATE_KEYS:
                setattr(self, key, self.initial_state[key])

    def state(self) -> dict:
        return {key: getattr(self, key) for key in self.STATE_KEYS}


# PyTorch's ReduceLROnPlateau, so the notes' schedule cuts where it did. Keras's own is a
# different rule: its ``min_delta`` is absolute only (the notes used a 10 % *relative*
# threshold), it cuts after ``patience`` stalled epochs where PyTorch waits for
# ``patience + 1``, and its cooldown ignores one epoch fewer (``cooldown=1`` does nothing).
# With the notes' ``threshold=0.1, patience=3`` Keras's rule cuts on other epochs.
MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


def _number(name: str, value, below: float = math.inf) -> float:
    if not (is_number(value) and 0 <= value < below):
        bound = f"< {below}" if below < math.inf else "finite"
        raise ValueError(f"{name} must be a number >= 0 and {bound}, got {value!r}")
    return float(value)


def _count(name: str, value) -> int:
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _choice(name: str, value, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value


class TorchReduceLROnPlateau(keras.callbacks.Callback):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau``, stepped once an epoch with ``logs[monitor]``.

    Arguments and defaults are PyTorch's, and so is the rule: a value is better when it beats
    ``best * (1 - threshold)`` (mode ``min``, ``rel``), ``best - threshold`` (``abs``), or the
    mirror images in mode ``max``; the rate becomes ``max(lr * factor, min_lr)`` after
    ``patience + 1`` epochs in a row without a better value, unless that changes it by ``eps``
    or less; then ``cooldown`` epochs pass in which stalled epochs are not counted.

    ``epoch_sum=True`` steps with ``logs[monitor] * steps`` (``steps``: the epoch's batch count,
    ``self.params["steps"]``). Keras logs the epoch's mean loss; the notes stepped PyTorch with
    the sum of their 391 batch losses. A relative threshold cannot tell the two apart, an
    absolute one can. Keras weights its mean by images, so the product is the sum of the batch
    means exactly when every batch is full: a short last batch weighs less in Keras's mean, which
    moves the product by its share of the loss (about 1e-3 relatively for the notes' 80 images).
    ``last_value`` holds the value of the last step.

    ``state()`` returns the counters as a JSON-ready dict; pass it back as ``state=`` to resume.
    Nothing is reset when ``fit`` starts, so a run resumed after epoch k cuts on the same
    epochs as one never stopped. A missing ``monitor`` key warns and skips the epoch, as Keras
    does. ``verbose=True`` prints PyTorch's line on each cut, numbering epochs by scheduler steps
    (1 after the first epoch, as PyTorch stepped once an epoch from the start).

    The optimizer's learning rate must be a plain value (a variable), not a schedule. Keras holds
    it in float32 where PyTorch holds a float64, so rates agree to float32 precision, and a cut
    whose size lies within float32 rounding of ``eps`` can be decided the other way.
    """

    STATE_KEYS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def __init__(
        self,
        monitor: str = "loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        verbose: bool = False,
        epoch_sum: bool = False,
        state: dict | None = None,
    ):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged metric, got {monitor!r}")
        self.monitor = monitor
        self.mode = _choice("mode", mode, MODES)
        self.factor = _number("factor", factor, below=1.0)
        self.patience = _count("patience", patience)
        self.threshold = _number("threshold", threshold)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, THRESHOLD_MODES)
        self.cooldown = _count("cooldown", cooldown)
        self.min_lr = _number("min_lr", min_lr)
        self.eps = _number("eps", eps)
        self.verbose = bool(verbose)
        self.epoch_sum = bool(epoch_sum)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0  # scheduler steps taken, as PyTorch counts them
        self.last_value: float | None = None
        if state is not None:
            self.load_state(state)

    def state(self) -> dict:
        return {key: getattr(self, key) for key in self.STATE_KEYS}

    def load_state(self, state: dict) -> None:
        # json writes inf as Infinity and reads it back as a float, so best round-trips.
        self.best = float(state["best"])
        self.num_bad_epochs = _count("num_bad_epochs", state["num_bad_epochs"])
        self.cooldown_counter = _count("cooldown_counter", state["cooldown_counter"])
        self.last_epoch = _count("last_epoch", state["last_epoch"])

    def on_train_begin(self, logs=None):
        self._learning_rate()  # refuse a schedule before the first epoch, not at the first cut
        if self.epoch_sum and not (self.params or {}).get("steps"):
            raise ValueError(
                "epoch_sum=True needs the number of steps per epoch, which Keras does not know "
                "for this dataset; give fit() a sized dataset or steps_per_epoch"
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                "Learning rate reduction is conditioned on metric "
                f"`{self.monitor}` which is not available. Available metrics "
                f"are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        value = float(value) * (self.params["steps"] if self.epoch_sum else 1)
        self.step(value)

    def step(self, value: float) -> None:
        """One ``ReduceLROnPlateau.step(value)`` of PyTorch, in its order of updates."""
        self.last_value = value = float(value)
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            scale = 1.0 - self.threshold if self.mode == "min" else 1.0 + self.threshold
            bar = self.best * scale
        else:
            bar = self.best - self.threshold if self.mode == "min" else self.best + self.threshold
        return value < bar if self.mode == "min" else value > bar

    def _learning_rate(self):
        rate = self.model.optimizer.learning_rate
        if not isinstance(rate, keras.Variable):
            raise ValueError(
                "TorchReduceLROnPlateau sets the optimizer's learning rate, but this optimizer's "
                "learning rate is a schedule, not a variable; give the optimizer a float "
                "learning rate"
            )
        return rate

    def _reduce_lr(self) -> None:
        rate = self._learning_rate()
        old_lr = float(keras.ops.convert_to_numpy(rate))
        new_lr = max(old_lr * self.factor, self.min_lr)
        if old_lr - new_lr > self.eps:
            rate.assign(new_lr)
            if self.verbose:
                # torch.optim's verbose line (removed from torch by 2.13) as the notes' log shows
                # it; the same f-string as PyTorch 1.x, whose {:5d} the log's spacing collapsed.
                print(
                    f"Epoch {self.last_epoch:5d}: reducing learning rate of group 0 to "
                    f"{new_lr:.4e}."
                )
