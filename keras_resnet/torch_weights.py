"""Load a PyTorch ResNet ``state_dict`` into a model from ``keras_resnet.build``.

Three PyTorch namings are accepted and rewritten to one canonical form, kuangliu/pytorch-cifar's
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.shortcut.0``, ``linear``): the notes' own
(``features.0``, ``layer1.0.features.3``, ``classifer``), kuangliu's, and torchvision's
(``downsample``, ``fc``), each also with nn.DataParallel's ``module.`` prefix. torch itself is
never imported: a checkpoint file is read by ``torch_reader``, and tensors in memory through
``.detach()``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import keras
import numpy as np

from keras_resnet.augment import RandomCropFlip
from keras_resnet.blocks import ResidualBlock
from keras_resnet.torch_reader import read_state_dict

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
# Sub-layers of a block in the order the branch runs them.
_BRANCH_ORDER = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
_PRE_ACTIVATION_ORDER = ("bn1", "conv1", "bn2", "conv2", "bn3", "conv3")
_HEAD = "linear."
# PyTorch stores conv kernels OIHW and Linear weights (out, in); Keras wants HWIO and (in, out).
_CONV_AXES = (2, 3, 1, 0)
OPTION_A_PADDINGS = ("both", "end")
"""Where a PyTorch option-A shortcut puts its zero channels: on ``both`` sides, as
akamaster/pytorch_resnet_cifar10's ``F.pad(x, (0, 0, 0, 0, planes // 4, planes // 4))`` does, or
at the ``end``, as ``keras_resnet`` does."""


class _Target(NamedTuple):
    """A Keras variable, the transpose from PyTorch's layout, and for each Keras channel of its
    output (PyTorch axis 0) and input (axis 1) the PyTorch channel it holds (None: the same)."""

    variable: keras.Variable
    axes: tuple[int, ...]
    out_channels: np.ndarray | None = None
    in_channels: np.ndarray | None = None

    def expected_shape(self) -> tuple[int, ...]:
        """The shape PyTorch stores this weight in."""
        return tuple(self.variable.shape[axis] for axis in np.argsort(self.axes))

    def assign(self, value: np.ndarray) -> None:
        if self.out_channels is not None:
            value = value[self.out_channels]
        if self.in_channels is not None:
            value = value[:, self.in_channels]
        self.variable.assign(np.transpose(value, self.axes).astype(self.variable.dtype))


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What ``load_torch_weights`` did, by the state_dict's own keys (``missing``, which has
    none, in kuangliu/pytorch-cifar naming)."""

    loaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # the classifier's, left out by skip_head
    missing: tuple[str, ...] = ()  # weights of the model the state_dict lacks
    unexpected: tuple[str, ...] = ()  # keys with no place in the model
    mismatched: tuple[str, ...] = ()  # keys whose shape differs from the model's

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} PyTorch tensors"]
        for field in ("skipped", "missing", "unexpected", "mismatched"):
            if keys := getattr(self, field):
                lines.append(f"{field} ({len(keys)}): {', '.join(keys)}")
        return "\n".join(lines)


def canonical_name(key: str) -> str:
    """``key`` in kuangliu/pytorch-cifar naming, whichever of the three namings it uses."""
    for pattern, replacement in _REWRITES:
        key = re.sub(pattern, replacement, key)
    return key


def _layer_targets(
    prefix: str,
    layer: keras.layers.Layer,
    out_channels: np.ndarray | None = None,
    in_channels: np.ndarray | None = None,
) -> dict[str, _Target]:
    """The canonical PyTorch keys of one Keras layer, each with the mapping from PyTorch."""
    if isinstance(layer, keras.layers.Conv2D):
        targets = {"weight": _Target(layer.kernel, _CONV_AXES, out_channels, in_channels)}
    elif isinstance(layer, keras.layers.Dense):
        targets = {"weight": _Target(layer.kernel, (1, 0), out_channels, in_channels)}
    elif isinstance(layer, keras.layers.BatchNormalization):
        vectors = {
            "weight": layer.gamma,
            "bias": layer.beta,
            "running_mean": layer.moving_mean,
            "running_var": layer.moving_variance,
        }
        return {f"{prefix}.{k}": _Target(v, (0,), out_channels) for k, v in vectors.items()}
    else:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no PyTorch mapping")
    if layer.use_bias:
        targets["bias"] = _Target(layer.bias, (0,), out_channels)
    return {f"{prefix}.{name}": target for name, target in targets.items()}


def _block_output_channels(
    block: ResidualBlock, stream: np.ndarray | None, padding: str
) -> np.ndarray | None:
    """The PyTorch channel of each Keras channel a block outputs, given its input's.

    An identity shortcut keeps the input's order; a projection, or no shortcut, starts
    PyTorch's. Option A carries the input's channels first and zeros after them; a PyTorch
    net that pads on both sides holds them in the middle, so they are renumbered to match.
    """
    cin, cout = block.in_channels, block.out_channels
    if block.projects or block.shortcut == "none":
        return None
    if cin == cout or padding == "end":
        return stream
    added = cout - cin
    if added % 2:
        raise ValueError(
            f"{block.name} adds {added} zero channels, which cannot be split evenly on both "
            "sides; pass option_a_padding='end' if the PyTorch net pads at the end"
        )
    carried = np.arange(cin) if stream is None else stream
    before = added // 2
    zeros = [c for c in range(cout) if not before <= c < before + cin]
    return np.concatenate([carried + before, zeros])


def _block_targets(
    prefix: str, block: ResidualBlock, stream: np.ndarray | None, out: np.ndarray | None
) -> dict[str, _Target]:
    """A block's keys. Its first convolution (and a pre-activation BN before it) reads the
    residual path in ``stream``'s channel order; its last one and the BN after it write it in
    ``out``'s; the layers between stay inside the block."""
    order = _PRE_ACTIVATION_ORDER if block.pre_activation else _BRANCH_ORDER
    parts = [name for name in order if getattr(block, name, None) is not None]
    convs = [i for i, name in enumerate(parts) if name.startswith("conv")]
    targets: dict[str, _Target] = {}
    for i, name in enumerate(parts):
        if i in convs:
            channels = (out if i == convs[-1] else None, stream if i == convs[0] else None)
        else:
            channels = (stream if i < convs[0] else out if i > convs[-1] else None, None)
        targets.update(_layer_targets(f"{prefix}.{name}", getattr(block, name), *channels))
    if block.projects:
        targets.update(_layer_targets(f"{prefix}.shortcut.0", block.shortcut_conv, out, stream))
        if not block.pre_activation:
            targets.update(_layer_targets(f"{prefix}.shortcut.1", block.shortcut_bn, out))
    return targets


def _model_targets(model: keras.Model, option_a_padding: str) -> dict[str, _Target]:
    """Every weight of ``model`` by its canonical PyTorch key."""
    targets: dict[str, _Target] = {}
    stream = None  # the PyTorch channel of each Keras channel on the residual path
    for layer in model.layers:
        block = _BLOCK_NAME.fullmatch(layer.name)
        if isinstance(layer, ResidualBlock) and block:
            out = _block_output_channels(layer, stream, option_a_padding)
            targets.update(_block_targets(f"layer{block[1]}.{block[2]}", layer, stream, out))
            stream = out
        elif layer.name in ("final_bn", "predictions"):
            channels = (stream, None) if layer.name == "final_bn" else (None, stream)
            targets.update(_layer_targets(_TOP_LEVEL[layer.name], layer, *channels))
        elif layer.name in _TOP_LEVEL:
            targets.update(_layer_targets(_TOP_LEVEL[layer.name], layer))
        elif layer.weights and not isinstance(layer, (keras.layers.Normalization, RandomCropFlip)):
            raise ValueError(f"layer {layer.name!r} has weights but no PyTorch counterpart")
    return targets


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, read without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_torch_weights(
    model: keras.Model,
    state_dict: Mapping[str, Any] | str | os.PathLike,
    *,
    skip_head: bool = False,
    strict: bool = True,
    option_a_padding: str = "both",
) -> LoadReport:
    """Copy a PyTorch ResNet ``state_dict`` into ``model`` (built by ``keras_resnet.build``).

    ``state_dict`` is a mapping of names to tensors or arrays, or the path of a checkpoint file
    holding one (read by ``torch_reader.read_state_dict``, without PyTorch).

    ``skip_head=True`` leaves the classifier (``linear``/``fc``/``classifer``) out, so the
    model's head keeps its initialisation, e.g. for another number of classes. With
    ``strict=True`` every problem (missing keys, unexpected keys, wrong shapes) is collected and
    raised as one ``ValueError`` before any weight is written, so a failed load leaves the model
    untouched; ``strict=False`` loads every tensor that matches by name and shape and reports
    the rest. ``option_a_padding`` says where the PyTorch net's option-A shortcuts put their
    zero channels (``OPTION_A_PADDINGS``). The optional input ``Normalization`` and
    ``RandomCropFlip`` layers have no PyTorch counterpart and are left as they are.
    """
    if option_a_padding not in OPTION_A_PADDINGS:
        raise ValueError(
            f"option_a_padding must be one of {', '.join(OPTION_A_PADDINGS)}, "
            f"got {option_a_padding!r}"
        )
    if isinstance(state_dict, str | os.PathLike):
        state_dict = read_state_dict(state_dict)
    targets = _model_targets(model, option_a_padding)
    if skip_head:
        targets = {name: t for name, t in targets.items() if not name.startswith(_HEAD)}
    given: dict[str, str] = {}  # canonical key -> the caller's key
    skipped: list[str] = []
    problems: list[str] = []
    for key in state_dict:
        if key.endswith("num_batches_tracked"):
            continue
        name = canonical_name(key)
        if skip_head and name.startswith(_HEAD):
            skipped.append(key)
            continue
        if name in given:
            problems.append(f"{key!r} and {given[name]!r} both map to {name!r}")
        given[name] = key
    missing = sorted(set(targets) - set(given))
    unexpected = sorted(given[name] for name in set(given) - set(targets))
    values: dict[str, np.ndarray] = {}
    mismatched: list[str] = []
    wrong_shapes: list[str] = []
    for name in sorted(set(given) & set(targets)):
        expected = targets[name].expected_shape()
        value = _to_numpy(state_dict[given[name]])
        if value.shape == expected:
            values[name] = value
        else:
            mismatched.append(given[name])
            wrong_shapes.append(f"{given[name]!r} has shape {value.shape}, expected {expected}")
    if strict:
        if missing:
            problems.append("missing (kuangliu/pytorch-cifar naming): " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        problems += wrong_shapes
    if problems:
        raise ValueError(
            f"cannot load the PyTorch state_dict into {model.name!r}:\n  " + "\n  ".join(problems)
        )
    for name, value in values.items():
        targets[name].assign(value)
    return LoadReport(
        loaded=tuple(given[name] for name in values),
        skipped=tuple(skipped),
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        mismatched=tuple(mismatched),
    )
