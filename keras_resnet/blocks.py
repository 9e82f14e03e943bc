"""Residual blocks of He et al. (2015, 2016) as serialisable Keras 3 layers.

Every number that makes these blocks match the notes' PyTorch model lives at the top of this
file: BatchNorm settings, the convolution initialiser and PyTorch-style symmetric padding.
Blocks are NHWC (channels last) and infer their input channels when first built.
"""

from __future__ import annotations

import keras
from keras import layers, ops

# PyTorch's BatchNorm2d(momentum=0.1) keeps 0.9 of the old running statistics: Keras's 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"): He-normal over fan-out.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}

SHORTCUTS = ("A", "B", "C", "none")
"""A: identity, subsample and zero-pad channels. B: projection only where the shape changes
(the notes' default). C: projection everywhere. none: no shortcut (a plain net)."""


def conv2d(
    filters: int, kernel_size: int, strides: int = 1, name: str | None = None, zero: bool = False
) -> layers.Conv2D:
    """A bias-free convolution; callers pad explicitly (see ``pad_like_torch``)."""
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        use_bias=False,
        kernel_initializer="zeros" if zero else keras.initializers.get(CONV_INITIALIZER),
        name=name,
    )


def batch_norm(name: str, zero_gamma: bool = False) -> layers.BatchNormalization:
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )


def pad_like_torch(x, kernel_size: int):
    """Pad both sides by ``kernel_size // 2``, as PyTorch's ``padding=k//2`` does.

    Keras's ``padding="same"`` pads only the bottom/right for stride-2 convolutions on even
    inputs, which shifts every stride-2 output by one pixel relative to PyTorch.
    """
    p = kernel_size // 2
    if p == 0:
        return x
    return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])


def _padded(shape: tuple, kernel_size: int) -> tuple:
    p = 2 * (kernel_size // 2)
    return (shape[0], *(None if d is None else d + p for d in shape[1:3]), shape[3])


def _build_conv(conv: layers.Conv2D, shape: tuple) -> tuple:
    """Build ``conv`` for an input of ``shape`` (before padding); return its output shape."""
    padded = _padded(shape, conv.kernel_size[0])
    conv.build(padded)
    return conv.compute_output_shape(padded)


def _build_bn(bn: layers.BatchNormalization, shape: tuple) -> tuple:
    bn.build(shape)
    return shape


def _apply_conv(conv: layers.Conv2D, x):
    return conv(pad_like_torch(x, conv.kernel_size[0]))


class ResidualBlock(layers.Layer):
    """Shared machinery of every block: arguments, input checks, the shortcut and ``get_config``.

    Subclasses set ``expansion`` and ``pre_activation`` and implement ``_build_branch`` and
    ``_forward``: the whole unit, F(x) plus the shortcut.
    """

    expansion = 1
    pre_activation = False

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        shortcut: str = "B",
        zero_init_residual: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(
                f"{type(self).__name__}: filters must be a positive int, got {filters!r}"
            )
        if not isinstance(strides, int) or isinstance(strides, bool) or strides not in (1, 2):
            raise ValueError(f"{type(self).__name__}: strides must be 1 or 2, got {strides!r}")
        if not isinstance(shortcut, str) or shortcut not in SHORTCUTS:
            raise ValueError(
                f"{type(self).__name__}: unknown shortcut {shortcut!r}; "
                f"valid: {', '.join(SHORTCUTS)}"
            )
        self.filters = filters
        self.strides = strides
        self.shortcut = shortcut
        self.zero_init_residual = bool(zero_init_residual)
        self.in_channels: int | None = None
        self.projects = False

    @property
    def out_channels(self) -> int:
        return self.filters * self.expansion

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.name}: expects a 4-D (batch, height, width, channels) input, "
                f"got shape {input_shape}"
            )
        if input_shape[-1] is None or input_shape[-1] < 1:
            raise ValueError(
                f"{self.name}: the channel dimension must be known and positive, "
                f"got shape {input_shape}"
            )
        self.in_channels = int(input_shape[-1])
        reshapes = self.strides != 1 or self.in_channels != self.out_channels
        if self.shortcut == "A" and self.in_channels > self.out_channels:
            raise ValueError(
                f"{self.name}: shortcut 'A' can only add channels, but the block maps "
                f"{self.in_channels} to {self.out_channels}; use shortcut 'B' or 'C'"
            )
        self.projects = self.shortcut == "C" or (self.shortcut == "B" and reshapes)
        if self.projects:
            self.shortcut_conv = conv2d(self.out_channels, 1, self.strides, name="shortcut_conv")
            out = _build_conv(self.shortcut_conv, input_shape)
            # The 2016 pre-activation unit keeps its shortcut a bare convolution.
            if not self.pre_activation:
                self.shortcut_bn = batch_norm("shortcut_bn")
                self.shortcut_bn.build(out)
        self._build_branch(input_shape)

    def _check_dtype(self, x) -> None:
        """Keras autocasts float inputs only; an integer or bool tensor would otherwise run
        silently through the convolutions and an integer shortcut addition."""
        dtype = keras.backend.standardize_dtype(x.dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise ValueError(
                f"{self.name}: expects a floating-point input, got dtype {dtype!r}; "
                "cast it first, e.g. keras.ops.cast(x, 'float32')"
            )

    def compute_output_spec(self, x, training=None):
        # Symbolic calls (keras.Input) come here instead of ``call``.
        self._check_dtype(x)
        return super().compute_output_spec(x, training=training)

    def call(self, x, training=None):
        self._check_dtype(x)  # at trace time only, under jit
        return self._forward(x, training)

    def _shortcut_path(self, x, training):
        """The identity (option A or B) or the projection ``W_s x`` (B where shapes differ, C)."""
        if self.projects:
            y = self.shortcut_conv(x)
            return y if self.pre_activation else self.shortcut_bn(y, training=training)
        if self.strides != 1:
            x = x[:, :: self.strides, :: self.strides, :]
        extra = self.out_channels - self.in_channels
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        return (
            b,
            None if h is None else -(-h // s),
            None if w is None else -(-w // s),
            self.out_channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            shortcut=self.shortcut,
            zero_init_residual=self.zero_init_residual,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions: ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``."""

    def _build_branch(self, shape):
        self.conv1 = conv2d(self.filters, 3, self.strides, name="conv1")
        self.bn1 = batch_norm("bn1")
        self.conv2 = conv2d(self.filters, 3, name="conv2")
        self.bn2 = batch_norm("bn2", zero_gamma=self.zero_init_residual)
        shape = _build_bn(self.bn1, _build_conv(self.conv1, shape))
        _build_bn(self.bn2, _build_conv(self.conv2, shape))

    def _forward(self, x, training):
        y = ops.relu(self.bn1(_apply_conv(self.conv1, x), training=training))
        y = self.bn2(_apply_conv(self.conv2, y), training=training)
        if self.shortcut != "none":
            y = y + self._shortcut_path(x, training)
        return ops.relu(y)


@keras.saving.register_keras_serializable(package="keras_resnet")
class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to ``4 * filters`` channels."""

    expansion = 4

    def _build_branch(self, shape):
        self.conv1 = conv2d(self.filters, 1, name="conv1")
        self.bn1 = batch_norm("bn1")
        self.conv2 = conv2d(self.filters, 3, self.strides, name="conv2")
        self.bn2 = batch_norm("bn2")
        self.conv3 = conv2d(self.out_channels, 1, name="conv3")
        self.bn3 = batch_norm("bn3", zero_gamma=self.zero_init_residual)
        shape = _build_bn(self.bn1, _build_conv(self.conv1, shape))
        shape = _build_bn(self.bn2, _build_conv(self.conv2, shape))
        _build_bn(self.bn3, _build_conv(self.conv3, shape))

    def _forward(self, x, training):
        y = ops.relu(self.bn1(_apply_conv(self.conv1, x), training=training))
        y = ops.relu(self.bn2(_apply_conv(self.conv2, y), training=training))
        y = self.bn3(_apply_conv(self.conv3, y), training=training)
        if self.shortcut != "none":
            y = y + self._shortcut_path(x, training)
        return ops.relu(y)


@keras.saving.register_keras_serializable(package="keras_resnet")
class PreActBasicBlock(ResidualBlock):
    """The 2016 unit: ``x + conv(ReLU(BN(conv(ReLU(BN(x))))))``, a clean identity path.

    A projection shortcut reads the activated input, as in the 2016 paper's code.
    """

    pre_activation = True

    def _build_branch(self, shape):
        self.bn1 = batch_norm("bn1")
        self.conv1 = conv2d(self.filters, 3, self.strides, name="conv1")
        self.bn2 = batch_norm("bn2")
        self.conv2 = conv2d(self.filters, 3, name="conv2", zero=self.zero_init_residual)
        shape = _build_conv(self.conv1, _build_bn(self.bn1, shape))
        _build_conv(self.conv2, _build_bn(self.bn2, shape))

    def _forward(self, x, training):
        a = ops.relu(self.bn1(x, training=training))
        y = _apply_conv(self.conv1, a)
        y = _apply_conv(self.conv2, ops.relu(self.bn2(y, training=training)))
        if self.shortcut == "none":
            return y
        return y + self._shortcut_path(a if self.projects else x, training)


@keras.saving.register_keras_serializable(package="keras_resnet")
class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck (ResNet-164, -1001): BN-ReLU before each of the three convs."""

    expansion = 4
    pre_activation = True

    def _build_branch(self, shape):
        self.bn1 = batch_norm("bn1")
        self.conv1 = conv2d(self.filters, 1, name="conv1")
        self.bn2 = batch_norm("bn2")
        self.conv2 = conv2d(self.filters, 3, self.strides, name="conv2")
        self.bn3 = batch_norm("bn3")
        self.conv3 = conv2d(self.out_channels, 1, name="conv3", zero=self.zero_init_residual)
        shape = _build_conv(self.conv1, _build_bn(self.bn1, shape))
        shape = _build_conv(self.conv2, _build_bn(self.bn2, shape))
        _build_conv(self.conv3, _build_bn(self.bn3, shape))

    def _forward(self, x, training):
        a = ops.relu(self.bn1(x, training=training))
        y = _apply_conv(self.conv1, a)
        y = _apply_conv(self.conv2, ops.relu(self.bn2(y, training=training)))
        y = _apply_conv(self.conv3, ops.relu(self.bn3(y, training=training)))
        if self.shortcut == "none":
            return y
        return y + self._shortcut_path(a if self.projects else x, training)


BLOCKS = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact_basic": PreActBasicBlock,
    "preact_bottleneck": PreActBottleneck,
}
