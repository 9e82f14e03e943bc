"""ResNet (He et al. 2015, 2016) for Keras 3 on JAX, with the notes' CIFAR-10 trainer."""

from keras_resnet._backend import prefer_eigen_convolutions, select_jax_backend

select_jax_backend()
prefer_eigen_convolutions()

from keras_resnet.augment import RandomCropFlip  # noqa: E402
from keras_resnet.blocks import (  # noqa: E402
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
)
from keras_resnet.losses import SmoothedSparseCrossentropy  # noqa: E402
from keras_resnet.models import ModelSpec, build, get_spec, list_models  # noqa: E402
from keras_resnet.optimizers import TorchSGD  # noqa: E402  (registered for loading checkpoints)
from keras_resnet.schedules import Triangular  # noqa: E402
from keras_resnet.torch_plateau import TorchReduceLROnPlateau  # noqa: E402
from keras_resnet.torch_weights import load_torch_weights  # noqa: E402

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelSpec",
    "PreActBasicBlock",
    "PreActBottleneck",
    "RandomCropFlip",
    "SmoothedSparseCrossentropy",
    "TorchReduceLROnPlateau",
    "TorchSGD",
    "Triangular",
    "build",
    "get_spec",
    "list_models",
    "load_torch_weights",
]
__version__ = "0.1.0"
