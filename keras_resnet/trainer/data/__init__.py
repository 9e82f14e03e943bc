"""The training data: a tfds image-classification dataset or a folder of images, and its
batches for ``model.fit``.

``load_dataset("cifar10")`` (or any tfds dataset with ``image`` and ``label`` features) reads
both splits once into uint8 arrays (``tfds``). ``load_dataset("folder:PATH")`` reads a folder
of class folders, in memory or streamed (``folders``). ``synthetic`` generates CIFAR-shaped
data; ``splits`` holds what every source returns, and ``batches`` turns a split into the
batches of an epoch. Augmentation and normalisation happen inside the model (``RandomCropFlip``
and ``build``'s ``input_normalization``), so batches stay uint8 until they reach the device.
"""

from keras_resnet.errors import DataUnavailableError
from keras_resnet.trainer.data.batches import CifarBatches
from keras_resnet.trainer.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CLASS_NAMES, PAD
from keras_resnet.trainer.data.common import FOLDER
from keras_resnet.trainer.data.folders import DECODE_THREADS, FolderImages, load_folder
from keras_resnet.trainer.data.splits import Dataset, Split, subset
from keras_resnet.trainer.data.synthetic import synthetic_cifar10
from keras_resnet.trainer.data.tfds import load_tfds

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


def load_dataset(
    name: str = "cifar10",
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    max_memory_gb: float = 4.0,
) -> Dataset:
    """``--dataset``: ``folder:PATH``, or the name of a tfds image-classification dataset."""
    if name.startswith(FOLDER):
        return load_folder(name[len(FOLDER) :], image_size, max_memory_gb)
    return load_tfds(name, data_dir, image_size, max_memory_gb)
