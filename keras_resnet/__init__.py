"""ResNet (He et al. 2015, 2016) for Keras 3: layers, models, and what trains them.

This package is the library a Keras user imports; its layers and ``build`` are written in
``keras.ops`` and run on any Keras backend. The CIFAR-10 trainer that ``train.py`` runs is
``keras_resnet.trainer``, built on it and on JAX; the library never imports the trainer.
Importing it sets a few process settings first (JAX as the backend if Keras is not imported
yet, quiet TensorFlow, XLA's CPU convolutions): ``keras_resnet.environment`` lists them and how
to opt out.
"""

from keras_resnet import environment

environment.configure()

from keras_resnet.augment import RandomCropFlip  # noqa: E402
from keras_resnet.blocks import (  # noqa: E402
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
)
from keras_resnet.callbacks import (  # noqa: E402
    ResumableReduceLROnPlateau,
    StopOnNaN,
    StopOnSignal,
    TorchReduceLROnPlateau,
)
from keras_resnet.errors import (  # noqa: E402
    ConfigError,
    DataUnavailableError,
    DivergedError,
    KerasResnetError,
    ModelFileError,
    RunFolderError,
    UnsafeCheckpointError,
)
from keras_resnet.losses import SmoothedSparseCrossentropy  # noqa: E402
from keras_resnet.models import ModelSpec, build, get_spec, list_models  # noqa: E402
from keras_resnet.optimizers import TorchSGD  # noqa: E402  (registered for loading checkpoints)
from keras_resnet.saving import load_model  # noqa: E402
from keras_resnet.schedules import Triangular  # noqa: E402
from keras_resnet.torch_weights import load_torch_weights  # noqa: E402

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConfigError",
    "DataUnavailableError",
    "DivergedError",
    "KerasResnetError",
    "ModelFileError",
    "ModelSpec",
    "PreActBasicBlock",
    "PreActBottleneck",
    "RandomCropFlip",
    "ResumableReduceLROnPlateau",
    "RunFolderError",
    "SmoothedSparseCrossentropy",
    "StopOnNaN",
    "StopOnSignal",
    "TorchReduceLROnPlateau",
    "TorchSGD",
    "Triangular",
    "UnsafeCheckpointError",
    "build",
    "get_spec",
    "list_models",
    "load_model",
    "load_torch_weights",
]
__version__ = "0.1.0"
