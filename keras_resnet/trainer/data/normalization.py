"""The per-channel normalisations a run names with ``--normalization``, on the 0-1 scale.

The model applies them inside (``build``'s ``input_normalization``), so batches stay uint8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_resnet import pretrained
from keras_resnet.trainer.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD

if TYPE_CHECKING:
    from keras_resnet.trainer.data.splits import Dataset

Statistics = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel

# kuangliu/pytorch-cifar's CIFAR-10 statistics, the notes' Normalize((0.5, 0.5, 0.5), (0.5, 0.5,
# 0.5)), and ImageNet's, which the published CIFAR-10 weights were trained with (fine-tuning
# them: --init-from resnet20:cifar10).
NORMALIZATIONS: dict[str, Statistics] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": pretrained.WEIGHTS["cifar10"].normalization,
}
# The training split's own statistics, measured when the run starts. A recipe's "cifar10" means
# "the data's statistics" measured on CIFAR-10, so on any other dataset it becomes "data" unless
# given explicitly; the notes' fixed 0.5/0.5 stays as it is.
DATA_NORMALIZATION = "data"
NORMALIZATION_NAMES = (*NORMALIZATIONS, DATA_NORMALIZATION)


def normalization_statistics(name: str, data: Dataset | None) -> Statistics:
    """What ``name`` stands for; ``data`` is measured for ``"data"``."""
    if name != DATA_NORMALIZATION:
        return NORMALIZATIONS[name]
    if data is None:
        raise ValueError('normalization="data" needs the data to measure')
    return data.statistics()
