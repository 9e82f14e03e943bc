"""CIFAR-10 as the notes use it: its classes, the per-channel statistics they normalise with
and the padding of their random crop."""

from keras_resnet.pretrained import CIFAR10_CLASS_NAMES

CLASS_NAMES = CIFAR10_CLASS_NAMES  # the published CIFAR-10 weights name them too
# The notes' per-channel statistics, on the 0-1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
PAD = 4  # the notes' random 32x32 crop from the image padded by 4 pixels on each side
