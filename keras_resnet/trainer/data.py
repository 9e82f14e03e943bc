"""CIFAR-10 from tensorflow-datasets, held in memory, and its batches for ``model.fit``.

CIFAR-10 is 150 MB, so both splits are read once into uint8 arrays. Every epoch's order
follows from ``(seed, epoch)`` alone, so a resumed run sees exactly the data an unbroken one
would have. Augmentation and normalisation happen inside the model (``RandomCropFlip`` and
``build``'s ``input_normalization``), so batches stay uint8 until they reach the device and the
host does no per-pixel work.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_resnet.errors import ConfigError, DataUnavailableError

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The notes' per-channel statistics, on the 0-1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
PAD = 4  # the notes' random 32x32 crop from the image padded by 4 pixels on each side


@dataclasses.dataclass
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass
class Cifar10:
    train: Split
    test: Split
    validation: Split | None = None
    source: str = "tfds"


def _hide_gpus_from_tensorflow() -> None:
    """tfds reads through TensorFlow; it must never reserve GPU memory that JAX needs."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            "Reading CIFAR-10 needs TensorFlow (tensorflow-cpu), which is not installed: "
            "pip install -r requirements.txt, or train on --synthetic data."
        ) from error
    tf.config.set_visible_devices([], "GPU")


def _read_tfds_split(split: str, data_dir: str | None) -> Split:
    import tensorflow_datasets as tfds

    # Read in fixed-size batches: batch_size=-1 needs the split size from metadata.
    dataset = tfds.load(
        "cifar10", split=split, data_dir=data_dir, as_supervised=True, batch_size=10_000
    )
    images, labels = [], []
    for x, y in tfds.as_numpy(dataset):
        images.append(x)
        labels.append(y)
    if not images:
        raise DataUnavailableError(f"The cifar10 {split!r} split in data_dir={data_dir!r} is empty")
    return Split(np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32))


def load_cifar10(data_dir: str | None = None) -> Cifar10:
    """Both splits of tfds's ``cifar10`` as arrays; download them if tfds can."""
    _hide_gpus_from_tensorflow()
    try:
        return Cifar10(
            train=_read_tfds_split("train", data_dir), test=_read_tfds_split("test", data_dir)
        )
    except DataUnavailableError:
        raise
    except Exception as error:  # tfds raises many types: network, missing files, bad checksums
        where = f"data_dir={data_dir!r}" if data_dir else "tfds's default data_dir"
        raise DataUnavailableError(
            f"Could not load CIFAR-10: tried tfds.load('cifar10') from {where}, downloading it "
            f"if missing, and got {type(error).__name__}: {error}\n"
            "Fix: on a machine with internet run "
            "`python -c \"import tensorflow_datasets as tfds; tfds.load('cifar10', "
            "data_dir='DIR')\"`, copy DIR here and pass --data-dir DIR; "
            "or try the program on generated data with --synthetic."
        ) from error


def synthetic_cifar10(train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Cifar10:
    """Generated CIFAR-shaped data that a network can learn: each class is a colour pattern.

    Lets anyone run the whole program in a minute, without a GPU or internet.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    patterns = []
    for c in range(len(CLASS_NAMES)):
        angle = np.pi * c / len(CLASS_NAMES)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) * (1 + c % 3))
        colour = rng.uniform(0.2, 0.8, size=3)
        patterns.append(128 + 80 * wave[..., None] * colour)
    patterns = np.stack(patterns)

    def make(n: int) -> Split:
        labels = rng.integers(0, len(CLASS_NAMES), size=n).astype(np.int32)
        noise = rng.normal(0, 40, size=(n, 32, 32, 3))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        return Split(images, labels)

    return Cifar10(train=make(train_size), test=make(test_size), source="synthetic")


def subset(data: Cifar10, train_size: int | None = None, val_size: int = 0) -> Cifar10:
    """Hold out the last ``val_size`` training images for validation, then keep the first
    ``train_size`` of the rest. Both checks name the value and the number available."""
    available = len(data.train)
    if not 0 <= val_size < available:
        raise ConfigError("val_size", f"must be between 0 and {available - 1}, got {val_size}")
    train, validation = data.train, None
    if val_size:
        validation = train.take(slice(available - val_size, None))
        train = train.take(slice(0, available - val_size))
    if train_size is not None:
        if not 0 < train_size <= len(train):
            raise ConfigError(
                "train_size",
                f"must be between 1 and {len(train)} (the training images left), got {train_size}",
            )
        train = train.take(slice(0, train_size))
    return Cifar10(train=train, test=data.test, validation=validation, source=data.source)


class CifarBatches(keras.utils.PyDataset):
    """Batches for ``model.fit``: shuffled per epoch when ``train`` is true, else in order.

    Call ``set_epoch`` before each epoch (``SetEpoch`` does it); the epoch's permutation comes
    from ``np.random.default_rng([seed, epoch])``.

    For data-parallel runs every batch must split evenly over ``devices``: a short last
    training batch that does not is dropped, and a short last evaluation batch is padded with
    copies of its last image (``predict_logits`` trims the extra rows). With ``shard=(i, n)``
    process ``i`` of ``n`` yields its contiguous slice of each global batch, so the processes
    together see exactly the batches a single process would.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        train: bool = False,
        seed: int = 0,
        devices: int = 1,
        shard: tuple[int, int] = (0, 1),
    ):
        super().__init__()
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.devices = devices
        self.shard = shard
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        n = len(self.split)
        self._order = (
            np.random.default_rng([self.seed, epoch]).permutation(n) if self.train else np.arange(n)
        )

    def __len__(self) -> int:
        full, rest = divmod(len(self.split), self.batch_size)
        return full + bool(rest and (not self.train or rest % self.devices == 0))

    def __getitem__(self, index: int):
        batch = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if len(batch) % self.devices:
            batch = np.pad(batch, (0, -len(batch) % self.devices), mode="edge")
        rank, count = self.shard
        mine = batch[rank * len(batch) // count : (rank + 1) * len(batch) // count]
        return self.split.images[mine], self.split.labels[mine]
