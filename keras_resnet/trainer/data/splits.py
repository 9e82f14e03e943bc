"""The splits a run uses, whatever their source: one type for arrays and streamed folders, so
batching, statistics and the validation hold-out are written once."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from keras_resnet.errors import ConfigError
from keras_resnet.trainer.data.cifar10 import CLASS_NAMES

if TYPE_CHECKING:
    from keras_resnet.trainer.data.folders import FolderImages

STATISTICS_IMAGES = 10_000  # normalization="data" samples at most this many training images


@dataclasses.dataclass
class Split:
    images: np.ndarray | FolderImages  # (N, height, width, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass
class Dataset:
    """The splits a run uses, and what the model must know of them."""

    train: Split
    test: Split
    validation: Split | None = None
    source: str = "tfds"  # tfds, folder, folder (streamed) or synthetic
    name: str = "cifar10"  # as --dataset names it
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) of the training images on the 0-1 scale, for
        ``normalization="data"``: over every image, or a fixed sample of a bigger split."""
        images, n = self.train.images, len(self.train)
        pick = np.arange(n)
        if n > STATISTICS_IMAGES:
            pick = np.sort(np.random.default_rng(0).choice(n, STATISTICS_IMAGES, replace=False))
        pixels = np.asarray(images[pick], np.float64).reshape(-1, 3) / 255.0
        std = np.maximum(pixels.std(axis=0), 1e-3)  # a constant channel must not divide by 0
        return tuple(map(float, pixels.mean(axis=0))), tuple(map(float, std))


def subset(data: Dataset, train_size: int | None = None, val_size: int = 0) -> Dataset:
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
    return dataclasses.replace(data, train=train, validation=validation)
