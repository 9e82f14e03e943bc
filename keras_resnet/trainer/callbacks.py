"""The trainer's callbacks: per-epoch data order, validation, the epoch's summed loss, the notes'
log, checkpoints (never of diverged weights)."""

from __future__ import annotations

import math
import threading

import keras
import numpy as np

from keras_resnet.callbacks import ResumableReduceLROnPlateau, TorchReduceLROnPlateau
from keras_resnet.errors import DivergedError
from keras_resnet.trainer.data import CifarBatches, Split
from keras_resnet.trainer.evaluation import cross_entropy, predict_logits
from keras_resnet.trainer.run_folder import HISTORY_COLUMNS, RunFolder
from keras_resnet.trainer.state import ResumeState, kept


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


def sum_of_batch_means(
    mean: float, previous_mean: float | None, batches: int, batch_size: int, images: int
) -> float:
    """The sum of the first ``batches`` batch-mean losses, from Keras's running means.

    Keras logs the mean over the images seen (``images`` after ``batches`` batches), weighting
    each batch by its size; PyTorch's ``train_loss += loss.item()`` adds batch means. With full
    batches the two differ by the factor ``batches``; a short last batch needs ``previous_mean``
    (the running mean one batch earlier) to take its own mean out exactly.
    """
    if images == batches * batch_size:
        return mean * batches
    earlier = (batches - 1) * batch_size
    last_mean = (mean * images - previous_mean * earlier) / (images - earlier)
    return previous_mean * (batches - 1) + last_mean


class EpochLossSum(keras.callbacks.Callback):
    """Add ``loss_sum`` to each epoch's logs: the sum of the epoch's batch-mean losses, the
    value the notes stepped PyTorch's ``ReduceLROnPlateau`` with and printed as "Total loss".

    ``images`` is how many images an epoch trains on, in batches of ``batch_size`` (the last
    one may be short). Put it before the callbacks that read ``loss_sum``.
    """

    def __init__(self, batch_size: int, images: int):
        super().__init__()
        self.async_safe = True  # it only records; Keras flushes batch callbacks before epoch end
        self.batch_size = batch_size
        self.images = images
        self._lock = threading.Lock()
        self.running: dict[int, tuple[float, float]] = {}

    def on_epoch_begin(self, epoch, logs=None):
        with self._lock:
            self.running = {}

    def on_train_batch_end(self, batch, logs=None):
        record = (float(logs["loss"]), float(logs.get("accuracy", math.nan)))
        with self._lock:
            self.running[batch] = record

    def seen(self, batch: int) -> int:
        """Images trained on by the end of ``batch`` (from 0) of the epoch."""
        return min((batch + 1) * self.batch_size, self.images)

    def sum_through(self, batch: int) -> float | None:
        """The summed batch means of batches ``0..batch``, or None while they are not known."""
        with self._lock:
            mean = self.running.get(batch, (None,))[0]
            previous = self.running.get(batch - 1, (None,))[0]
        seen = self.seen(batch)
        if mean is None or (previous is None and seen != (batch + 1) * self.batch_size):
            return None
        return sum_of_batch_means(mean, previous, batch + 1, self.batch_size, seen)

    def on_epoch_end(self, epoch, logs=None):
        if self.running:
            logs["loss_sum"] = self.sum_through(max(self.running))


class NoteLog(keras.callbacks.Callback):
    """The notes' log, character for character: ``Epoch: N`` as each epoch begins, every
    ``every`` batches ``[epoch, batch] loss: <summed batch losses> |  Acc: x% (correct/seen)``,
    then ``Total loss: ...`` when it ends.

    It reads what ``loss_sum`` (an ``EpochLossSum`` earlier in the callback list) recorded,
    and prints only on the main thread, when a batch begins and when the epoch ends: Keras runs
    batch-end callbacks on a thread pool, where lines could come out of order, or after an
    interrupt had been reported.
    """

    def __init__(self, loss_sum: EpochLossSum, every: int = 100):
        super().__init__()
        self.loss_sum = loss_sum
        self.every = every

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.next_line = self.every - 1  # the batch (from 0) of the next line
        print(f"Epoch: {epoch}", flush=True)

    def on_train_batch_begin(self, batch, logs=None):
        self._print_ready_lines()

    def _print_ready_lines(self) -> None:
        while True:
            batch = self.next_line
            total = self.loss_sum.sum_through(batch)
            if total is None:
                return
            accuracy = self.loss_sum.running[batch][1]
            seen = self.loss_sum.seen(batch)
            # The notes' '[%d, %5d] loss: %.6f |  Acc: %.3f%% (%d/%d)'.
            print(
                f"[{self.epoch + 1:d}, {batch + 1:5d}] loss: {total:.6f} |  "
                f"Acc: {100 * accuracy:.3f}% ({round(accuracy * seen):d}/{seen:d})",
                flush=True,
            )
            self.next_line += self.every

    def on_epoch_end(self, epoch, logs=None):
        self._print_ready_lines()
        print(f"Total loss: {logs['loss_sum']:.6f}", flush=True)


def check_finite(model: keras.Model, epoch: int, run: RunFolder) -> None:
    """Refuse to save a model whose weights (or optimizer state) hold a NaN or infinity: the
    loss can stay finite while they diverge, and such a file is no result. The error says what
    ``run`` keeps of earlier epochs."""
    variables = [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
    for variable in variables:
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        if np.issubdtype(values.dtype, np.inexact) and not np.isfinite(values).all():
            raise DivergedError(
                f"The weights became NaN or infinite in epoch {epoch} ({variable.path}); "
                f"nothing of that epoch is saved. {kept(run)} Try a lower --lr with "
                "--overwrite or another --output-dir."
            )


class Checkpoint(keras.callbacks.Callback):
    """Persist everything a restart needs at the end of every epoch (``RunFolder.save_epoch``).

    ``best.keras`` follows ``monitor`` (the validation accuracy; None: no ``best.keras``) and
    is never written from a non-finite loss, nor any file from non-finite weights (the run
    ends in a ``DivergedError``). Run it after the learning-rate callback so that its cut is
    part of the saved state.
    """

    def __init__(
        self,
        run: RunFolder,
        plateau: ResumableReduceLROnPlateau | TorchReduceLROnPlateau | None,
        monitor: str | None,
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
        check_finite(self.model, epoch + 1, self.run)
        state = self.state
        state.history.append(row)
        score = row.get(self.monitor) if self.monitor else None
        improved = score is not None and (state.best is None or score > state.best)
        if improved:
            state.best, state.best_epoch = score, epoch + 1
        state.epochs_done = epoch + 1
        state.learning_rate = current_lr(self.model)
        state.plateau = self.plateau.state() if self.plateau else None
        self.run.save_epoch(self.model, state, improved)
