"""ResNet (He et al. 2015, 2016) for Keras 3: layers, models, and what trains them.

This package is the library a Keras user imports; its layers and ``build`` are written in
``keras.ops`` and run on any Keras backend. The CIFAR-10 trainer that ``train.py`` runs is
``keras_resnet.trainer``, built on it and on JAX; the library never imports the trainer.
Importing it imports neither Keras nor JAX: each name is imported when first used, and the
layers are registered with Keras once Keras is imported (``registration``). It sets a few
process settings first (JAX as the backend if Keras is not imported yet, quiet TensorFlow,
XLA's CPU convolutions): ``keras_resnet.environment`` lists them and how to opt out.
"""

from keras_resnet import environment, registration
from keras_resnet._lazy import attributes
from keras_resnet.errors import (
    ConfigError,
    DataUnavailableError,
    DivergedError,
    KerasResnetError,
    ModelFileError,
    RunFolderError,
    UnsafeCheckpointError,
)
from keras_resnet.registry import ModelSpec, get_spec, list_models

environment.configure()  # before Keras is first imported: it reads KERAS_BACKEND then
registration.register_with_keras()

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
__getattr__ = attributes(
    __name__,
    {
        "RandomCropFlip": "augment",
        "BasicBlock": "blocks",
        "Bottleneck": "blocks",
        "PreActBasicBlock": "blocks",
        "PreActBottleneck": "blocks",
        "ResumableReduceLROnPlateau": "callbacks",
        "StopOnNaN": "callbacks",
        "StopOnSignal": "callbacks",
        "TorchReduceLROnPlateau": "callbacks",
        "SmoothedSparseCrossentropy": "losses",
        "build": "models",
        "TorchSGD": "optimizers",
        "load_model": "saving",
        "Triangular": "schedules",
        "load_torch_weights": "torch_weights",
    },
)
