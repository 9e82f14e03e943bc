import sys

try:
    from keras_resnet.cli import console
except KeyboardInterrupt:  # Ctrl-C while the frameworks load: nothing was started
    sys.exit(130)

console()
