"""The trainer's callbacks: per-epoch data order, validation, the notes' log, checkpoints."""

from __future__ import annotations

import math
import threading

import keras

from keras_resnet.callbacks import ResumableReduceLROnPlateau
from keras_resnet.trainer.data import CifarBatches, Split
from keras_resnet.trainer.evaluation import cross_entropy, predict_logits
from keras_resnet.trainer.run_folder import HISTORY_COLUMNS, ResumeState, RunFolder


def current_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


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


class Checkpoint(keras.callbacks.Callback):
    """Persist everything a restart needs at the end of every epoch (``RunFolder.save_epoch``).

    ``best.keras`` follows the monitored accuracy and is never written from a non-finite loss.
    Run it after the learning-rate callback so that its cut is part of the saved state.
    """

    def __init__(
        self,
        run: RunFolder,
        plateau: ResumableReduceLROnPlateau | None,
        monitor: str,
        state: ResumeState,
    ):
        super().__init__()
        self.run = run
        self.plateau = plateau
        self.monitor = monitor
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_lr = current_lr(self.model)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5] if k in logs}}
        row["learning_rate"] = self.epoch_lr
        if not all(math.isfinite(v) for v in row.values()):
            print(f"Epoch {epoch + 1} ended with a non-finite loss: its weights are not saved.")
            return
        state = self.state
        state.history.append(row)
        score = row.get(self.monitor)
        improved = score is not None and (state.best is None or score > state.best)
        if improved:
            state.best, state.best_epoch = score, epoch + 1
        state.epochs_done = epoch + 1
        state.learning_rate = current_lr(self.model)
        state.plateau = self.plateau.state() if self.plateau else None
        self.run.save_epoch(self.model, state, improved)
