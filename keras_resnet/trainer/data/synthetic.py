"""Generated CIFAR-shaped data, so the whole program runs in a minute without a download."""

import numpy as np

from keras_resnet.trainer.data.cifar10 import CLASS_NAMES
from keras_resnet.trainer.data.splits import Dataset, Split

SYNTHETIC_CLASSES_SEED = 0  # fixes the generated classes' colours, whatever the run's seed


def synthetic_cifar10(train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Dataset:
    """Generated CIFAR-shaped data that a network can learn: each class is a colour pattern.

    Lets anyone run the whole program in a minute, without a GPU or internet. The classes are
    the same for every ``seed`` (a model trained at one seed is scored on the same task at
    another); the seed picks the images: their labels and noise.
    """
    colours = np.random.default_rng(SYNTHETIC_CLASSES_SEED).uniform(0.2, 0.8, size=(10, 3))
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    patterns = []
    for c, colour in enumerate(colours):
        angle = np.pi * c / len(CLASS_NAMES)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) * (1 + c % 3))
        patterns.append(128 + 80 * wave[..., None] * colour)
    patterns = np.stack(patterns)
    rng = np.random.default_rng(seed)

    def make(n: int) -> Split:
        labels = rng.integers(0, len(CLASS_NAMES), size=n).astype(np.int32)
        noise = rng.normal(0, 40, size=(n, 32, 32, 3))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        return Split(images, labels)

    return Dataset(train=make(train_size), test=make(test_size), source="synthetic")
