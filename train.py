"""Train a ResNet on CIFAR-10 with the notes' recipe: ``python train.py --help``."""

import os
import signal
import sys


def _stop_at_once(signum, frame):
    """Until training takes its signals over, a stop has nothing to save: end at once."""
    sys.stdout.flush()
    os._exit(128 + signum)


if __name__ == "__main__":
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_at_once)
    from keras_resnet.cli import exit_quietly, train_main

    exit_quietly(train_main())
