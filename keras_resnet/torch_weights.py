"""Load a PyTorch ResNet ``state_dict`` into a model from ``keras_resnet.build``.

Three PyTorch namings are accepted and rewritten to one canonical form, kuangliu/pytorch-cifar's
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.shortcut.0``, ``linear``): the notes' own
(``features.0``, ``layer1.0.features.3``, ``classifer``), kuangliu's, and torchvision's
(``downsample``, ``fc``). torch itself is never imported: tensors are read through ``.detach()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from keras_resnet.augment import RandomCropFlip
from keras_resnet.blocks import ResidualBlock

# The notes' blocks are one Sequential: conv, BN, ReLU, conv, BN[, ReLU, conv, BN].
_FEATURES = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
_REWRITES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^module\.", ""),  # saved from nn.DataParallel
    (r"^((?:layer\d+\.\d+\.)?)features\.([013467])\.", lambda m: f"{m[1]}{_FEATURES[m[2]]}."),
    (r"^(layer\d+\.\d+\.)downsample\.", r"\1shortcut."),
    (r"^(?:classifer|classifier|fc)\.", "linear."),
]
_TOP_LEVEL = {
    "stem_conv": "conv1",
    "stem_bn": "bn1",
    "final_bn": "final_bn",
    "predictions": "linear",
}
_BLOCK_NAME = re.compile(r"stage(\d+)_block(\d+)")
_BLOCK_PARTS = {name: name for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")} | {
    "shortcut_conv": "shortcut.0",
    "shortcut_bn": "shortcut.1",
}
# PyTorch stores conv kernels OIHW and Linear weights (out, in); Keras wants HWIO and (in, out).
_CONV_AXES = (2, 3, 1, 0)
_Target = tuple[keras.Variable, tuple[int, ...]]  # a Keras variable and its axes in PyTorch


def canonical_name(key: str) -> str:
    """``key`` in kuangliu/pytorch-cifar naming, whichever of the three namings it uses."""
    for pattern, replacement in _REWRITES:
        key = re.sub(pattern, replacement, key)
    return key


def _layer_targets(prefix: str, layer: keras.layers.Layer) -> dict[str, _Target]:
    """The canonical PyTorch keys of one Keras layer, each with the transpose that maps it."""
    if isinstance(layer, keras.layers.Conv2D):
        targets = {"weight": (layer.kernel, _CONV_AXES)}
    elif isinstance(layer, keras.layers.Dense):
        targets = {"weight": (layer.kernel, (1, 0))}
    elif isinstance(layer, keras.layers.BatchNormalization):
        return {
            f"{prefix}.weight": (layer.gamma, (0,)),
            f"{prefix}.bias": (layer.beta, (0,)),
            f"{prefix}.running_mean": (layer.moving_mean, (0,)),
            f"{prefix}.running_var": (layer.moving_variance, (0,)),
        }
    else:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no PyTorch mapping")
    if layer.use_bias:
        targets["bias"] = (layer.bias, (0,))
    return {f"{prefix}.{name}": target for name, target in targets.items()}


def _model_targets(model: keras.Model) -> dict[str, _Target]:
    """Every weight of ``model`` by its canonical PyTorch key."""
    targets: dict[str, _Target] = {}
    for layer in model.layers:
        block = _BLOCK_NAME.fullmatch(layer.name)
        if isinstance(layer, ResidualBlock) and block:
            stage, index = block.groups()
            for attribute, part in _BLOCK_PARTS.items():
                if (sublayer := getattr(layer, attribute, None)) is not None:
                    targets.update(_layer_targets(f"layer{stage}.{index}.{part}", sublayer))
        elif layer.name in _TOP_LEVEL:
            targets.update(_layer_targets(_TOP_LEVEL[layer.name], layer))
        elif layer.weights and not isinstance(layer, (keras.layers.Normalization, RandomCropFlip)):
            raise ValueError(f"layer {layer.name!r} has weights but no PyTorch counterpart")
    return targets


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, read without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_torch_weights(model: keras.Model, state_dict: Mapping[str, Any]) -> None:
    """Copy a PyTorch ResNet ``state_dict`` into ``model`` (built by ``keras_resnet.build``).

    Every problem (missing keys, unexpected keys, wrong shapes) is collected and raised as one
    ``ValueError`` before any weight is written, so a failed load leaves the model untouched.
    The optional input ``Normalization`` and ``RandomCropFlip`` layers have no PyTorch
    counterpart and are left as they are.
    """
    targets = _model_targets(model)
    given: dict[str, str] = {}  # canonical key -> the caller's key
    problems: list[str] = []
    for key in state_dict:
        if key.endswith("num_batches_tracked"):
            continue
        name = canonical_name(key)
        if name in given:
            problems.append(f"{key!r} and {given[name]!r} both map to {name!r}")
        given[name] = key
    missing = sorted(set(targets) - set(given))
    unexpected = sorted(given[name] for name in set(given) - set(targets))
    if missing:
        problems.append("missing (kuangliu/pytorch-cifar naming): " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    values: dict[str, np.ndarray] = {}
    for name in sorted(set(given) & set(targets)):
        variable, axes = targets[name]
        expected = tuple(variable.shape[axis] for axis in np.argsort(axes))
        value = _to_numpy(state_dict[given[name]])
        if value.shape != expected:
            problems.append(f"{given[name]!r} has shape {value.shape}, expected {expected}")
        values[name] = value
    if problems:
        raise ValueError(
            f"cannot load the PyTorch state_dict into {model.name!r}:\n  " + "\n  ".join(problems)
        )
    for name, value in values.items():
        variable, axes = targets[name]
        variable.assign(np.transpose(value, axes).astype(variable.dtype))
