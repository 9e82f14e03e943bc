"""Starting a run from trained weights (``--init-from``) and training only its head
(``--freeze-backbone``).

The source is a ``.keras`` model of this project, a PyTorch checkpoint in a naming
``load_torch_weights`` knows, or ``NAME:WEIGHTS`` (``resnet20:cifar10``), a model with its
published weights. Every layer that matches the new model by name and shapes is
loaded; the head starts afresh when its number of classes differs. Anything else that differs
in shape means another architecture, and the run is refused before its folder is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NoReturn

import keras

from keras_resnet.augment import RandomCropFlip
from keras_resnet.errors import ModelFileError
from keras_resnet.saving import open_model
from keras_resnet.torch_reader import SUFFIXES as TORCH_SUFFIXES
from keras_resnet.torch_weights import canonical_name, load_torch_weights

HEAD = "predictions"  # the classifier layer of every model ``keras_resnet.build`` makes


@dataclasses.dataclass(frozen=True)
class InitReport:
    """What a run took from its ``--init-from`` file: layers of a ``.keras`` model, or the
    tensors of a PyTorch checkpoint (``unit`` says which)."""

    source: str
    unit: str
    loaded: tuple[str, ...]
    reinitialised: tuple[str, ...]  # the head, for another number of classes
    not_in_source: tuple[str, ...]
    unused: tuple[str, ...]  # in the file but not in this model

    def __str__(self) -> str:
        lines = [f"Initialised from {self.source}: loaded {len(self.loaded)} {self.unit}."]
        for label, names in (
            ("re-initialised (another number of classes)", self.reinitialised),
            (f"not in {Path(self.source).name}, left as initialised", self.not_in_source),
            ("not used from the file", self.unused),
        ):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        return "\n".join(lines)


def initialise(model: keras.Model, path: str) -> InitReport:
    """Load into ``model`` every layer of ``path`` that matches it; a ``ModelFileError`` when
    the file cannot be read or holds another architecture."""
    if Path(path).suffix in TORCH_SUFFIXES:
        return _from_torch(model, path)
    return _from_keras(model, path)


def freeze_backbone(model: keras.Model) -> None:
    """Make every layer but the head untrainable. A frozen ``BatchNormalization`` runs in
    inference mode in Keras 3 (it normalises with, and keeps, its moving statistics), and the
    optimizer, weight decay included, sees only the head's weights. Call it before compiling."""
    model.get_layer(HEAD)  # a model without a head has nothing left to train
    for layer in model.layers:
        if layer.name != HEAD and layer.trainable_weights:
            layer.trainable = False


def _learned_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers whose weights are learned: not the input's normalisation or augmentation,
    which belong to the new run's settings."""
    return [
        layer
        for layer in model.layers
        if layer.weights and not isinstance(layer, (keras.layers.Normalization, RandomCropFlip))
    ]


def _shapes(layer: keras.layers.Layer) -> list[tuple]:
    return [tuple(w.shape) for w in layer.weights]


def _from_keras(model: keras.Model, path: str) -> InitReport:
    source = {layer.name: layer for layer in _learned_layers(open_model(path))}
    matched, reinitialised, not_in_source, different = [], [], [], []
    for layer in _learned_layers(model):
        theirs = source.pop(layer.name, None)
        if theirs is None:
            not_in_source.append(layer.name)
        elif type(theirs) is type(layer) and _shapes(theirs) == _shapes(layer):
            matched.append((layer, theirs))
        elif layer.name == HEAD:
            reinitialised.append(layer.name)
        else:
            different.append(f"{layer.name} {_shapes(theirs)} there, {_shapes(layer)} here")
    if different or not matched:
        _refuse(path, model, different)
    for layer, theirs in matched:
        layer.set_weights(theirs.get_weights())
    return InitReport(
        path,
        "layers",
        tuple(layer.name for layer, _ in matched),
        tuple(reinitialised),
        tuple(not_in_source),
        tuple(source),
    )


def _from_torch(model: keras.Model, path: str) -> InitReport:
    try:
        report = load_torch_weights(model, path, strict=False)
    except ValueError as error:  # keys that collide, or a model without a PyTorch mapping
        raise ModelFileError(
            f"cannot start from {path!r}: {' '.join(str(error).split())}"
        ) from None
    head = [key for key in report.mismatched if canonical_name(key).startswith("linear.")]
    different = [key for key in report.mismatched if key not in head]
    if different or not report.loaded:
        _refuse(path, model, different)
    return InitReport(
        path, "PyTorch tensors", report.loaded, tuple(head), report.missing, report.unexpected
    )


def _refuse(path: str, model: keras.Model, different: list[str]) -> NoReturn:
    shown = "; ".join(different[:3]) + (f"; and {len(different) - 3} more" if different[3:] else "")
    detail = f"shapes differ: {shown}" if different else "no layer matches"
    raise ModelFileError(
        f"cannot start {model.name} from {path!r}: it holds another architecture ({detail})"
    )
