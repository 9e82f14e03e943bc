"""The model registry: every network is one line of configuration, built by ``build``.

``build("resnet18")`` gives the notes' CIFAR-10 network; keyword arguments override any field
of the registered ``ModelSpec`` (as ``timm.create_model`` does), e.g.
``build("resnet50", stem="imagenet", input_shape=(224, 224, 3), num_classes=1000)``.
``build(name, include_top=False, features_only=True)`` gives the stem's and every stage's
feature map instead, for detection and segmentation heads, as ``timm`` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import keras
from keras import layers

from keras_resnet import pretrained
from keras_resnet.blocks import BLOCKS, batch_norm, conv2d, torch_bias_initializer
from keras_resnet.checks import is_int, is_number
from keras_resnet.registry import (
    INITIALIZATIONS,
    STEM_KERNELS,
    STEMS,
    TORCH_DEFAULT_INITIALIZER,
    ModelSpec,
    check_choice,
    downsampling,
    get_spec,
    layer_depth,
    list_models,
    parameter_count,
    register,
)

# The registry's names, for those who import them from here as before.
__all__ = [
    "POOLINGS",
    "STEMS",
    "ClassNames",
    "FeatureExtractor",
    "FeatureInfo",
    "ModelSpec",
    "build",
    "class_names_of",
    "dataset_of",
    "downsampling",
    "get_spec",
    "layer_depth",
    "list_models",
    "parameter_count",
    "register",
]

POOLINGS = (None, "avg", "max")


class FeatureInfo(tuple):
    """One dict per feature map, as timm's ``feature_info``: ``num_chs`` (channels),
    ``reduction`` (input pixels per output pixel along each side) and ``module`` (the layer
    that computes it); ``channels()`` and ``reduction()`` list them as timm's do."""

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        return [info["module"] for info in self]


class FeatureMap(NamedTuple):
    """A feature map as ``build`` makes it: the tensor, the layer that computes it and its
    reduction, recorded where the layer is made so that its name is spelled once."""

    tensor: keras.KerasTensor
    module: str
    reduction: int

    def info(self) -> dict:
        """The map's entry in timm's ``feature_info``."""
        channels = self.tensor.shape[-1]
        return {"num_chs": channels, "reduction": self.reduction, "module": self.module}


@keras.saving.register_keras_serializable(package="keras_resnet")
class FeatureExtractor(keras.Model):
    """A functional model whose outputs are a list of feature maps, described by
    ``feature_info`` (a ``FeatureInfo``); the description is part of the config, so a
    ``.keras`` file keeps it."""

    def __init__(self, *args, feature_info: Sequence[dict] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info = FeatureInfo(dict(info) for info in feature_info)

    def get_config(self) -> dict:
        return {**super().get_config(), "feature_info": [dict(info) for info in self.feature_info]}


def _check_features(
    name: str, spec: ModelSpec, features_only, out_indices, include_top: bool, pooling
) -> tuple[int, ...]:
    """The feature indices to return (all by default), or a ValueError naming the bad value."""
    if not isinstance(features_only, bool):
        raise ValueError(f"features_only must be True or False, got {features_only!r}")
    if not features_only:
        if out_indices is not None:
            raise ValueError(f"out_indices={out_indices!r} needs features_only=True")
        return ()
    if include_top or pooling is not None:
        raise ValueError(
            "features_only=True returns feature maps: pass include_top=False and no pooling, "
            f"got include_top={include_top!r}, pooling={pooling!r}"
        )
    last = len(spec.depths)
    if out_indices is None:
        return tuple(range(last + 1))
    if not (
        isinstance(out_indices, (list, tuple))
        and out_indices
        and all(is_int(i) and 0 <= i <= last for i in out_indices)
        and list(out_indices) == sorted(set(out_indices))
    ):
        raise ValueError(
            f"out_indices must be increasing feature indices from 0 (the stem) to {last} "
            f"(the last of {name}'s {last} stages), got {out_indices!r}"
        )
    return tuple(out_indices)


def _check_input_shape(name: str, spec: ModelSpec, input_shape) -> tuple:
    if not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    height, width, channels = input_shape
    for value in input_shape:
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(
                f"input_shape entries must be positive ints or None, got {input_shape!r}"
            )
    if channels is None:
        raise ValueError(f"input_shape must give the number of channels, got {input_shape!r}")
    smallest = downsampling(spec)
    if any(side is not None and side < smallest for side in (height, width)):
        raise ValueError(
            f"input_shape {tuple(input_shape)} is too small for {name} with the "
            f"{spec.stem!r} stem: each side must be at least {smallest} pixels"
        )
    return tuple(input_shape)


def build(
    name: str,
    *,
    num_classes: int = 10,
    input_shape: Sequence[int | None] = (32, 32, 3),
    include_top: bool = True,
    pooling: str | None = None,
    classifier_activation: str | None = None,
    input_normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    augmentation: keras.layers.Layer | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    dataset: str | None = None,
    weights: str | os.PathLike | None = None,
    **overrides,
) -> keras.Model:
    """Build a registered network as a functional ``keras.Model``.

    The head returns logits unless ``classifier_activation`` (e.g. ``"softmax"``) is given; it
    always computes in float32 so mixed precision never degrades the loss. With
    ``include_top=False`` the model is a backbone: ``pooling`` ``"avg"``/``"max"`` pools it, as in
    ``keras.applications``. ``input_normalization=(mean, std)``, per channel on the 0-1 scale,
    makes the model take raw 0-255 pixels. ``augmentation`` (e.g. ``RandomCropFlip``) is applied
    to those raw pixels first, inside the compiled step; it acts only in training.

    ``features_only=True`` (with ``include_top=False`` and no pooling) returns a
    ``FeatureExtractor``: its outputs are a list of the feature maps ``out_indices`` selects,
    numbered as timm numbers them (0 the stem, 1..N the stages; default all), described by its
    ``feature_info``.

    ``class_names`` (one per class) and ``dataset`` travel inside the saved model in a
    ``ClassNames`` layer after the head, so a ``.keras`` file says what its outputs mean.

    ``weights="cifar10"`` loads the published CIFAR-10 weights of the models that have them
    (``keras_resnet.pretrained``; fetched once into Keras's cache); unless given otherwise the
    model then takes raw 0-255 pixels normalised as they were trained, and names CIFAR-10's
    classes. ``include_top=False``, or another ``num_classes``, leaves their classifier out.
    ``weights=PATH`` loads a ``.keras``, ``.weights.h5`` or PyTorch checkpoint file.
    """
    spec = get_spec(name, **overrides)
    published = None
    if weights is not None and not pretrained.is_weights_file(weights):
        published = pretrained.published(name, weights)
        if input_normalization is None:
            input_normalization = published.normalization
        if include_top and num_classes == len(published.class_names) and class_names is None:
            class_names, dataset = published.class_names, dataset or published.dataset
    # A published head scores its own classes; another number of them starts afresh.
    skip_head = not include_top or (
        published is not None and num_classes != len(published.class_names)
    )
    _check_num_classes(num_classes)
    if class_names is not None:
        _check_class_names(class_names, num_classes, include_top)
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    check_choice("pooling", pooling, POOLINGS)
    _check_activation(classifier_activation)
    input_shape = _check_input_shape(name, spec, input_shape)
    block = BLOCKS[spec.block]
    init = INITIALIZATIONS[spec.initializer]

    if augmentation is not None and not isinstance(augmentation, layers.Layer):
        raise ValueError(f"augmentation must be a keras Layer or None, got {augmentation!r}")
    out_indices = _check_features(name, spec, features_only, out_indices, include_top, pooling)
    # Before building: a missing file fails at once, and published weights download first.
    weights_path = None if weights is None else pretrained.resolve(name, weights)

    inputs = keras.Input(input_shape, name="image")
    x = inputs if augmentation is None else augmentation(inputs)
    if input_normalization is not None:
        mean, std = _check_normalization(input_normalization, input_shape[-1])
        x = layers.Normalization(
            mean=tuple(m * 255.0 for m in mean),
            variance=tuple((s * 255.0) ** 2 for s in std),
            name="normalize",
        )(x)
    # Feature index 0 is the stem's map, 1..N each stage's last block, as timm numbers them.
    # A pre-activation unit leaves its sum unactivated, so a pre-activation net's stage maps
    # are those sums, as timm's ResNet-V2 returns them: the final BN-ReLU belongs to the
    # classifier's path only.
    x, reduction, stem_map = _stem(x, spec, block.pre_activation, init.conv)
    features = [stem_map]
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True), start=1):
        for index in range(depth):
            strides = 2 if stage > 1 and index == 0 else 1
            unit = block(
                width,
                strides=strides,
                shortcut=spec.shortcut,
                zero_init_residual=spec.zero_init_residual,
                kernel_initializer=init.conv,
                name=f"stage{stage}_block{index}",
            )
            x, reduction = unit(x), reduction * strides
        features.append(FeatureMap(x, unit.name, reduction))
    if features_only:
        chosen = [features[i] for i in out_indices]
        extractor = FeatureExtractor(
            inputs,
            [feature.tensor for feature in chosen],
            feature_info=[feature.info() for feature in chosen],
            name=name,
        )
        if weights_path is not None:
            pretrained.load_weights(extractor, weights_path, skip_head=skip_head)
        return extractor
    if block.pre_activation:  # the 2016 paper ends with BN-ReLU before pooling
        x = batch_norm("final_bn")(x)
        x = layers.ReLU(name="final_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        fan_in = x.shape[-1]
        x = layers.Dense(
            num_classes,
            activation=classifier_activation,
            kernel_initializer=TORCH_DEFAULT_INITIALIZER,
            bias_initializer=torch_bias_initializer(fan_in) if init.torch_dense_bias else "zeros",
            dtype="float32",
            name="predictions",
        )(x)
        if class_names is not None:
            x = ClassNames(class_names, dataset, name="class_names")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights_path is not None:
        pretrained.load_weights(model, weights_path, skip_head=skip_head)
    return model


@keras.saving.register_keras_serializable(package="keras_resnet")
class ClassNames(layers.Layer):
    """Identity on the logits that carries the name of every class and of the dataset.

    A layer, not a Python attribute, because only the layer graph and its configs survive
    ``keras.saving.load_model``; float32 so mixed precision never casts the logits back down.
    """

    def __init__(self, class_names: Sequence[str], dataset: str | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.class_names = tuple(class_names)
        self.dataset = dataset

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return super().get_config() | {
            "class_names": list(self.class_names),
            "dataset": self.dataset,
        }


def class_names_of(model: keras.Model) -> tuple[str, ...] | None:
    """The class names saved in ``model`` by ``build(class_names=...)``, or None."""
    layer = _class_names_layer(model)
    return None if layer is None else layer.class_names


def dataset_of(model: keras.Model) -> str | None:
    """The dataset ``model`` was built for (``build(dataset=...)``), or None."""
    layer = _class_names_layer(model)
    return None if layer is None else layer.dataset


def _class_names_layer(model: keras.Model) -> ClassNames | None:
    return next((layer for layer in model.layers if isinstance(layer, ClassNames)), None)


def _check_class_names(class_names, num_classes: int, include_top: bool) -> None:
    if not include_top:
        raise ValueError("class_names needs include_top=True: a backbone has no classes")
    names = list(class_names) if isinstance(class_names, Sequence) else None
    if (
        isinstance(class_names, str)
        or names is None
        or not all(isinstance(n, str) for n in names)
        or len(names) != num_classes
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"class_names must be {num_classes} distinct strings (num_classes), got {class_names!r}"
        )


def _check_num_classes(num_classes) -> None:
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def _activation_names() -> list[str]:
    return sorted(
        n
        for n in dir(keras.activations)
        if not n.startswith("_") and n not in ("get", "serialize", "deserialize")
    )


def _check_activation(value) -> None:
    """Only names: a callable (a lambda) would make the saved model unloadable in safe mode."""
    if value is not None and (not isinstance(value, str) or value not in _activation_names()):
        raise ValueError(
            f"Unknown classifier_activation {value!r}; valid: None, "
            f"{', '.join(_activation_names())}"
        )


def _check_normalization(value, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)``: ``channels`` finite numbers each, std positive (it is divided by)."""
    pair = _items(value)
    if pair is not None and len(pair) == 2:
        mean, std = (_items(v) for v in pair)
        if (
            mean is not None
            and std is not None
            and len(mean) == len(std) == channels
            and all(is_number(v) for v in (*mean, *std))
            and all(s > 0 for s in std)
        ):
            return tuple(map(float, mean)), tuple(map(float, std))
    raise ValueError(
        f"input_normalization must be (mean, std) with {channels} finite numbers each "
        f"(std > 0), got {value!r}"
    )


def _items(value) -> list | None:
    """The elements of a sequence or array ``value``, or None for anything else (a string, a
    mapping, a scalar; an iterator too, which could be endless)."""
    if isinstance(value, (str, bytes)) or not (
        isinstance(value, Sequence) or hasattr(value, "__array__")
    ):
        return None
    try:
        return list(value)
    except TypeError:  # a 0-d array
        return None


def _stem(
    x: keras.KerasTensor, spec: ModelSpec, pre_activation: bool, initializer: dict
) -> tuple[keras.KerasTensor, int, FeatureMap]:
    """3x3 convolution for CIFAR; 7x7/2 convolution and 3x3/2 max-pool for ImageNet.

    Returns the stem's output, its reduction, and its ``FeatureMap`` (feature index 0): the
    last activation before the max-pool, as timm takes it. A pre-activation CIFAR stem's map
    is the bare convolution, as timm's ResNet-V2 returns it: the first unit starts with its
    own BN-ReLU.
    """
    imagenet = spec.stem == "imagenet"
    stride = 2 if imagenet else 1
    conv = conv2d(
        spec.widths[0], STEM_KERNELS[spec.stem], stride, name="stem_conv", initializer=initializer
    )
    x = conv(x)
    if pre_activation and not imagenet:
        return x, stride, FeatureMap(x, conv.name, stride)
    x = batch_norm("stem_bn")(x)
    relu = layers.ReLU(name="stem_relu")
    x = relu(x)
    features = FeatureMap(x, relu.name, stride)
    if imagenet:
        # PyTorch pads the max-pool with -inf; zeros are the same here (the input is a ReLU
        # output), and Keras's pooling has no symmetric padding, hence the separate layer.
        x = layers.ZeroPadding2D(1, name="pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
        stride *= 2
    return x, stride, features
