"""Train a ResNet on CIFAR-10 with the notes' recipe: ``python train.py --help``."""

import sys

if __name__ == "__main__":
    try:
        from keras_resnet.cli import train_main
    except KeyboardInterrupt:  # Ctrl-C while the frameworks load: nothing was started
        sys.exit(130)
    sys.exit(train_main())
