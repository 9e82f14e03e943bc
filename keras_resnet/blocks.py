"""Residual blocks of He et al. (2015, 2016) as serialisable Keras 3 layers.

Every number that makes these blocks match PyTorch lives at the top of this file (BatchNorm
settings, PyTorch-style symmetric padding in ``TorchConv2D``) or, for what the command line
reads without Keras, in ``keras_resnet.registry`` (the initialisers each source used, the
shortcut options, each block's expansion).
Blocks are NHWC (channels last) and infer their input channels when first built.
"""

from __future__ import annotations

import keras
from keras import layers, ops
from keras.src.saving import serialization_lib

from keras_resnet.checks import is_int
from keras_resnet.registry import (
    BLOCK_KINDS,
    HE_NORMAL_FAN_OUT_INITIALIZER,
    SHORTCUTS,
)

# PyTorch's BatchNorm2d(momentum=0.1) keeps 0.9 of the old running statistics: Keras's 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def torch_bias_initializer(fan_in: int) -> keras.initializers.Initializer:
    """PyTorch's default Conv2d/Linear bias, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5
    return keras.initializers.RandomUniform(-bound, bound)


@keras.saving.register_keras_serializable(package="keras_resnet")
class TorchConv2D(layers.Conv2D):
    """A convolution padded as PyTorch's ``padding=kernel_size // 2``: on both sides, then valid.

    Keras's ``padding="same"`` pads only the bottom/right for stride-2 convolutions on even
    inputs, which shifts every stride-2 output by one pixel relative to PyTorch.
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        if kwargs.pop("padding", "valid") != "valid":
            raise ValueError(f"{type(self).__name__} pads as PyTorch does; omit padding")
        super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"{type(self).__name__} is NHWC only, got {self.data_format!r}")

    @property
    def torch_padding(self) -> tuple[int, int]:
        return tuple(k // 2 for k in self.kernel_size)

    def _padded(self, input_shape):
        b, h, w, c = input_shape
        ph, pw = self.torch_padding
        return (b, None if h is None else h + 2 * ph, None if w is None else w + 2 * pw, c)

    def call(self, inputs):
        ph, pw = self.torch_padding
        if ph or pw:
            inputs = ops.pad(inputs, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        return super().call(inputs)

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(self._padded(input_shape))


def conv2d(
    filters: int,
    kernel_size: int,
    strides: int = 1,
    *,
    name: str,
    initializer: str | dict,
    dtype=None,
) -> TorchConv2D:
    """A bias-free, PyTorch-padded convolution.

    ``initializer`` is a name or config, not an instance: an unseeded instance shared by two
    layers draws the same numbers for both.
    """
    return TorchConv2D(
        filters,
        kernel_size,
        strides=strides,
        use_bias=False,
        kernel_initializer=initializer,
        name=name,
        dtype=dtype,
    )


def batch_norm(name: str, zero_gamma: bool = False, dtype=None) -> layers.BatchNormalization:
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
        dtype=dtype,
    )


def _serialized(initializer: str | dict | keras.initializers.Initializer) -> dict:
    """``initializer`` as ``keras.initializers.serialize`` writes it, without its first step:
    that asks whether the object is a TensorFlow shape, which imports TensorFlow (seconds)."""
    instance = keras.initializers.get(initializer)
    config = serialization_lib.serialize_with_public_class(type(instance), instance.get_config())
    return config if config is not None else keras.initializers.serialize(instance)


def _build_chain(shape: tuple, *chain: layers.Layer) -> tuple:
    """Build each layer of ``chain`` on the output shape of the one before; return the last."""
    for layer in chain:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


class ResidualBlock(layers.Layer):
    """Shared machinery of every block: arguments, input checks, the shortcut and ``get_config``.

    Subclasses set ``expansion`` and ``pre_activation`` and implement ``_build_branch`` and
    ``_residual``, the branch F(x); ``call`` adds the shortcut once for all of them.
    ``kernel_initializer`` starts every convolution (the default is the 2015 paper's).
    """

    expansion = 1
    pre_activation = False

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        shortcut: str = "B",
        zero_init_residual: bool = False,
        kernel_initializer: str | dict | keras.initializers.Initializer = (
            HE_NORMAL_FAN_OUT_INITIALIZER
        ),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not is_int(filters) or filters < 1:
            raise ValueError(
                f"{type(self).__name__}: filters must be a positive int, got {filters!r}"
            )
        if not is_int(strides) or strides not in (1, 2):
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
        # Kept serialised: each convolution then builds its own instance from it (see conv2d).
        self.kernel_initializer = _serialized(kernel_initializer)
        self.in_channels: int | None = None
        self.projects = False

    @property
    def out_channels(self) -> int:
        return self.filters * self.expansion

    # Sub-layers take the block's dtype policy: a mixed-precision model loads back as one even
    # when the global policy is float32.
    def _conv(self, filters: int, kernel_size: int, strides: int = 1, *, name: str, zero=False):
        initializer = "zeros" if zero else self.kernel_initializer
        return conv2d(
            filters,
            kernel_size,
            strides,
            name=name,
            initializer=initializer,
            dtype=self.dtype_policy,
        )

    def _norm(self, name: str, zero_gamma: bool = False) -> layers.BatchNormalization:
        return batch_norm(name, zero_gamma, dtype=self.dtype_policy)

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
            self.shortcut_conv = self._conv(
                self.out_channels, 1, self.strides, name="shortcut_conv"
            )
            # The 2016 pre-activation unit keeps its shortcut a bare convolution.
            if self.pre_activation:
                _build_chain(input_shape, self.shortcut_conv)
            else:
                self.shortcut_bn = self._norm("shortcut_bn")
                _build_chain(input_shape, self.shortcut_conv, self.shortcut_bn)
        self._build_branch(input_shape)
        # The sub-layers are made here, after ``trainable`` was set: a frozen block read back
        # from a file must freeze them too (its BNs then also stay in inference mode).
        if not self.trainable:
            self.trainable = False

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
        y, activated = self._residual(x, training)
        if self.shortcut != "none":
            y = y + self._shortcut_path(activated if self.projects else x, training)
        # The 2016 unit leaves its sum unactivated: the next unit's BN-ReLU comes first.
        return y if self.pre_activation else ops.relu(y)

    def _residual(self, x, training) -> tuple:
        """F(x), and the input a projection shortcut reads: ``x``, or for pre-activation units
        BN-ReLU(x), as in the 2016 paper's code."""
        raise NotImplementedError

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
            kernel_initializer=self.kernel_initializer,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions: ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``."""

    expansion = BLOCK_KINDS["basic"].expansion
    pre_activation = BLOCK_KINDS["basic"].pre_activation

    def _build_branch(self, shape):
        self.conv1 = self._conv(self.filters, 3, self.strides, name="conv1")
        self.bn1 = self._norm("bn1")
        self.conv2 = self._conv(self.filters, 3, name="conv2")
        self.bn2 = self._norm("bn2", zero_gamma=self.zero_init_residual)
        _build_chain(shape, self.conv1, self.bn1, self.conv2, self.bn2)

    def _residual(self, x, training):
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        return self.bn2(self.conv2(y), training=training), x


@keras.saving.register_keras_serializable(package="keras_resnet")
class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to ``4 * filters`` channels."""

    expansion = BLOCK_KINDS["bottleneck"].expansion
    pre_activation = BLOCK_KINDS["bottleneck"].pre_activation

    def _build_branch(self, shape):
        self.conv1 = self._conv(self.filters, 1, name="conv1")
        self.bn1 = self._norm("bn1")
        self.conv2 = self._conv(self.filters, 3, self.strides, name="conv2")
        self.bn2 = self._norm("bn2")
        self.conv3 = self._conv(self.out_channels, 1, name="conv3")
        self.bn3 = self._norm("bn3", zero_gamma=self.zero_init_residual)
        _build_chain(shape, self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3)

    def _residual(self, x, training):
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = ops.relu(self.bn2(self.conv2(y), training=training))
        return self.bn3(self.conv3(y), training=training), x


@keras.saving.register_keras_serializable(package="keras_resnet")
class PreActBasicBlock(ResidualBlock):
    """The 2016 unit: ``x + conv(ReLU(BN(conv(ReLU(BN(x))))))``, a clean identity path.

    A projection shortcut reads the activated input, as in the 2016 paper's code.
    """

    expansion = BLOCK_KINDS["preact_basic"].expansion
    pre_activation = BLOCK_KINDS["preact_basic"].pre_activation

    def _build_branch(self, shape):
        self.bn1 = self._norm("bn1")
        self.conv1 = self._conv(self.filters, 3, self.strides, name="conv1")
        self.bn2 = self._norm("bn2")
        self.conv2 = self._conv(self.filters, 3, name="conv2", zero=self.zero_init_residual)
        _build_chain(shape, self.bn1, self.conv1, self.bn2, self.conv2)

    def _residual(self, x, training):
        a = ops.relu(self.bn1(x, training=training))
        y = self.conv1(a)
        return self.conv2(ops.relu(self.bn2(y, training=training))), a


@keras.saving.register_keras_serializable(package="keras_resnet")
class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck (ResNet-164, -1001): BN-ReLU before each of the three convs."""

    expansion = BLOCK_KINDS["preact_bottleneck"].expansion
    pre_activation = BLOCK_KINDS["preact_bottleneck"].pre_activation

    def _build_branch(self, shape):
        self.bn1 = self._norm("bn1")
        self.conv1 = self._conv(self.filters, 1, name="conv1")
        self.bn2 = self._norm("bn2")
        self.conv2 = self._conv(self.filters, 3, self.strides, name="conv2")
        self.bn3 = self._norm("bn3")
        self.conv3 = self._conv(self.out_channels, 1, name="conv3", zero=self.zero_init_residual)
        _build_chain(shape, self.bn1, self.conv1, self.bn2, self.conv2, self.bn3, self.conv3)

    def _residual(self, x, training):
        a = ops.relu(self.bn1(x, training=training))
        y = self.conv1(a)
        y = self.conv2(ops.relu(self.bn2(y, training=training)))
        return self.conv3(ops.relu(self.bn3(y, training=training))), a


BLOCKS = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact_basic": PreActBasicBlock,
    "preact_bottleneck": PreActBottleneck,
}
