"""TensorBoard logs of a run (``--tensorboard``): Keras's callback and a few training images.

Keras's ``TensorBoard`` callback writes each epoch's loss, accuracy and learning rate (the
``train`` run) and the validation loss and accuracy that ``Validate`` adds (the ``validation``
run), through ``tf.summary``; ``EpochTensorBoard`` keeps it off the steps. ``TrainingImages``
adds a few of each epoch's training images.
"""

from __future__ import annotations

from pathlib import Path

import keras

from keras_resnet.export import import_tensorflow
from keras_resnet.trainer.data import CifarBatches

IMAGES = 8


class TrainingImages(keras.callbacks.Callback):
    """The first ``count`` images of each epoch's first training batch, as the host feeds them:
    the random crop, flip and cutout happen later, on the device, inside the compiled step.

    Put it after ``SetEpoch``, so that the batch is the epoch's own.
    """

    def __init__(self, log_dir: Path, batches: CifarBatches, count: int = IMAGES):
        super().__init__()
        self.log_dir = log_dir
        self.batches = batches
        self.count = count
        self.summary = import_tensorflow().summary
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = self.summary.create_file_writer(str(self.log_dir / "train"))

    def on_epoch_begin(self, epoch, logs=None):
        images = self.batches[0][0][: self.count]
        with self.writer.as_default():
            self.summary.image("training_images", images, step=epoch, max_outputs=self.count)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's ``TensorBoard`` writing once an epoch, with nothing done per batch.

    Keras's own batch hooks call ``tf.summary.scalar`` for every metric of every batch (a
    no-op without a batch writer, at a TensorFlow op's cost each) and, not being
    ``async_safe``, make Keras run every batch callback on the main thread and wait for each
    step's loss there: with them a step of a small model cost 2.6 times a bare ``fit``'s
    (``benchmarks.host_overhead``). The trainer asks for neither batch summaries nor profiling.
    """

    def __init__(self, log_dir: Path):
        super().__init__(
            log_dir=str(log_dir), write_graph=False, update_freq="epoch", profile_batch=0
        )
        self.async_safe = True

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


def callbacks(log_dir: Path, batches: CifarBatches) -> list[keras.callbacks.Callback]:
    """The callbacks that write ``log_dir``. Put them after ``Validate`` (they log its
    metrics) and before the learning-rate callback (they log the rate the epoch ran at)."""
    return [
        TrainingImages(log_dir, batches),  # first: it imports TensorFlow as the trainer wants
        EpochTensorBoard(log_dir),
    ]
