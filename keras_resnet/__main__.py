import sys

from keras_resnet.cli import main

sys.exit(main())
