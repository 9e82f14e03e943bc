"""The training data: a tfds image-classification dataset or a folder of images, and its
batches for ``model.fit``.

``load_dataset("cifar10")`` (or any tfds dataset with ``image`` and ``label`` features) reads
both splits once into uint8 arrays (``tfds``). ``load_dataset("folder:PATH")`` reads a folder
of class folders, in memory or streamed (``folders``); a training run keeps a streamed folder's
decoded images in its run folder (``cache``). ``synthetic`` generates CIFAR-shaped
data; ``splits`` holds what every source returns, and ``batches`` turns a split into the
batches of an epoch. Augmentation and normalisation happen inside the model (``RandomCropFlip``
and ``build``'s ``input_normalization``), so batches stay uint8 until they reach the device.
The names below are imported when first used: ``cifar10`` and ``common`` need no Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_resnet._lazy import attributes
from keras_resnet.errors import DataUnavailableError
from keras_resnet.trainer.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CLASS_NAMES, PAD
from keras_resnet.trainer.data.common import FOLDER

if TYPE_CHECKING:
    from keras_resnet.trainer.data.splits import Dataset

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASS_NAMES",
    "DECODE_THREADS",
    "FOLDER",
    "PAD",
    "CifarBatches",
    "DataUnavailableError",
    "Dataset",
    "FolderImages",
    "Split",
    "load_dataset",
    "load_folder",
    "load_tfds",
    "subset",
    "synthetic_cifar10",
]
__getattr__ = attributes(
    __name__,
    {
        "CifarBatches": "batches",
        "DECODE_THREADS": "folders",
        "FolderImages": "folders",
        "load_folder": "folders",
        "Dataset": "splits",
        "Split": "splits",
        "subset": "splits",
        "synthetic_cifar10": "synthetic",
        "load_tfds": "tfds",
    },
)


def load_dataset(
    name: str = "cifar10",
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    max_memory_gb: float = 4.0,
) -> Dataset:
    """``--dataset``: ``folder:PATH``, or the name of a tfds image-classification dataset."""
    if name.startswith(FOLDER):
        from keras_resnet.trainer.data.folders import load_folder

        return load_folder(name[len(FOLDER) :], image_size, max_memory_gb)
    from keras_resnet.trainer.data.tfds import load_tfds

    return load_tfds(name, data_dir, image_size, max_memory_gb)
