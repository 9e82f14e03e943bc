"""Train a ResNet on CIFAR-10 with the notes' recipe: ``python train.py --help``."""

import sys

from keras_resnet.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
