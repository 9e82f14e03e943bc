"""Callbacks of the training recipe: per-epoch data, the notes' log, resumable state.

Every callback that acts per batch is ``async_safe``: Keras then runs the batch callbacks (and
the progress bar) on a thread pool after each step has been dispatched, so the host never
waits for the device inside an epoch. Keras re-raises their exceptions in the training loop
and waits for all of them before ``on_epoch_end``.
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import keras

from keras_resnet import io
from keras_resnet.data import CifarBatches, Split
from keras_resnet.evaluation import cross_entropy, predict_logits
from keras_resnet.saving import save_model

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def current_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


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


class SetEpoch(keras.callbacks.Callback):
    """Tell the training batches which epoch starts, so order and augmentation follow the seed."""

    def __init__(self, batches: CifarBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


class Validate(keras.callbacks.Callback):
    """Add ``val_loss`` and ``val_accuracy`` over every image of ``split`` to each epoch's logs.

    Keras's own validation needs every batch to split evenly over the devices of a
    data-parallel run; this pads and trims instead, so any device count reports the same
    numbers. Put it before the callbacks that read them.
    """

    def __init__(
        self,
        split: Split,
        devices: int = 1,
        flip_tta: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        super().__init__()
        self.split = split
        self.devices = devices
        self.flip_tta = flip_tta
        self.shard = shard

    def on_epoch_end(self, epoch, logs=None):
        logits = predict_logits(
            self.model, self.split, flip_tta=self.flip_tta, devices=self.devices, shard=self.shard
        )
        logs["val_loss"] = cross_entropy(logits, self.split.labels)
        logs["val_accuracy"] = float((logits.argmax(axis=-1) == self.split.labels).mean())


class NoteLog(keras.callbacks.Callback):
    """The notes' log: ``[epoch, batch] loss: <sum of batch losses> | Acc: x% (correct/seen)``
    every ``every`` batches, then ``Total loss: ...`` at the end of the epoch.

    The logs of batch ``b`` hold the running mean over batches ``0..b``, so each line depends on
    its own batch only, whichever thread prints it."""

    def __init__(self, batch_size: int, every: int = 100):
        super().__init__()
        self.async_safe = True
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.every = every

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.batches = 0
        print(f"Epoch: {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        batches = batch + 1
        with self._lock:
            self.batches = max(self.batches, batches)
        if batches % self.every == 0:
            seen = batches * self.batch_size
            accuracy = float(logs["accuracy"])
            print(
                f"[{self.epoch + 1}, {batches}] loss: {float(logs['loss']) * batches:.6f}"
                f" | Acc: {100 * accuracy:.3f}% ({round(accuracy * seen)}/{seen})"
            )

    def on_epoch_end(self, epoch, logs=None):
        print(f"Total loss: {float(logs['loss']) * self.batches:.6f}")


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


class Checkpoint(keras.callbacks.Callback):
    """Persist everything a restart needs at the end of every epoch, atomically.

    The model (with optimizer state) goes to ``checkpoints/epoch-NNNN.keras``; only then does
    ``state.json`` name it, so a crash at any point leaves a consistent pair. ``best.keras``
    follows the monitored accuracy and is never written from a non-finite loss.
    Run it after the learning-rate callback so that its cut is part of the saved state.
    """

    def __init__(
        self,
        run_dir: Path,
        plateau: ResumableReduceLROnPlateau | None,
        monitor: str,
        state: dict,
        write: bool = True,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.plateau = plateau
        self.monitor = monitor
        self.state = state
        self.write = write  # in a multi-host run only the first process writes

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_lr = current_lr(self.model)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5] if k in logs}}
        row["learning_rate"] = self.epoch_lr
        if not all(math.isfinite(v) for v in row.values()):
            print(f"Epoch {epoch + 1} ended with a non-finite loss: its weights are not saved.")
            return
        self.state["history"].append(row)
        score = row.get(self.monitor)
        improved = score is not None and score > self.state.get("best", -math.inf)
        if improved:
            self.state.update(best=score, best_epoch=epoch + 1)
        previous, name = self.state.get("checkpoint"), f"checkpoints/epoch-{epoch + 1:04d}.keras"
        self.state.update(
            epochs_done=epoch + 1,
            checkpoint=name,
            learning_rate=current_lr(self.model),
            plateau=self.plateau.state() if self.plateau else None,
        )
        if improved:
            save_model(self.model, self.run_dir / "best.keras", self.write)
        save_model(self.model, self.run_dir / name, self.write)
        if not self.write:
            return
        io.write_json(self.run_dir / "state.json", self.state)  # names the new checkpoint last
        write_history_csv(self.run_dir / "history.csv", self.state["history"])
        if previous and previous != name:
            (self.run_dir / previous).unlink(missing_ok=True)


def write_history_csv(path: Path, history: list[dict]) -> None:
    lines = [",".join(HISTORY_COLUMNS)]
    for row in history:
        lines.append(
            ",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in HISTORY_COLUMNS)
        )
    io.write_text(path, "\n".join(lines) + "\n")
