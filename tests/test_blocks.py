"""The residual blocks: shapes, shortcuts, PyTorch-equivalent numbers, settings, config, errors.

Numerical references are written directly with ``jax.lax.conv_general_dilated`` (PyTorch's
symmetric ``padding=k//2``) and the inference-mode BatchNorm formula with ``eps=1e-5``, so they
restate the note's PyTorch modules rather than reuse the code under test.
"""

import re

import jax
import keras
import numpy as np
import pytest
from keras import layers

from keras_resnet.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    TorchConv2D,
)
from keras_resnet.registry import HE_NORMAL_FAN_OUT_INITIALIZER, TORCH_DEFAULT_INITIALIZER

ALL_BLOCKS = (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)
POST_ACTIVATION = (BasicBlock, Bottleneck)
PRE_ACTIVATION = (PreActBasicBlock, PreActBottleneck)
EPS = 1e-5


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _run(block, x, training=False):
    return np.asarray(block(x, training=training))


def _sublayers(block, kind):
    return [layer for layer in block._flatten_layers(include_self=False) if isinstance(layer, kind)]


def _assert_close(actual, expected):
    """float32 agreement, relative to the output's scale (random BN statistics make it large)."""
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def _weight_paths(block):
    return [w.path for w in block.weights]


def _trainable_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _randomize_batch_norms(block, seed=1):
    """Give every BN non-trivial gamma, beta and moving statistics (small variances make eps
    matter), so a reference that gets any of them wrong disagrees."""
    rng = np.random.default_rng(seed)
    for bn in _sublayers(block, layers.BatchNormalization):
        (c,) = bn.gamma.shape
        bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.2, c).astype("float32"))
        bn.moving_mean.assign(rng.normal(0.0, 0.2, c).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.01, 0.05, c).astype("float32"))


# --- A reference forward pass written from the note's PyTorch modules -------------------------


def _conv(x, conv, stride):
    kernel = np.asarray(conv.kernel)
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


def _bn(x, bn):
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    return (x - mean) / np.sqrt(var + EPS) * np.asarray(bn.gamma) + np.asarray(bn.beta)


def _relu(x):
    return np.maximum(np.asarray(x), 0.0)


def _identity_shortcut(x, block):
    x = x[:, :: block.strides, :: block.strides, :]
    extra = block.out_channels - x.shape[-1]
    return np.pad(x, [(0, 0), (0, 0), (0, 0), (0, extra)])


def _reference(block, x):
    """What the note's PyTorch block computes in eval mode, from the block's own weights."""
    s = block.strides
    if isinstance(block, BasicBlock):
        f = _relu(_bn(_conv(x, block.conv1, s), block.bn1))
        f = _bn(_conv(f, block.conv2, 1), block.bn2)
    elif isinstance(block, Bottleneck):
        f = _relu(_bn(_conv(x, block.conv1, 1), block.bn1))
        f = _relu(_bn(_conv(f, block.conv2, s), block.bn2))
        f = _bn(_conv(f, block.conv3, 1), block.bn3)
    else:
        a = _relu(_bn(x, block.bn1))
        f = _conv(a, block.conv1, 1 if isinstance(block, PreActBottleneck) else s)
        if isinstance(block, PreActBottleneck):
            f = _conv(_relu(_bn(f, block.bn2)), block.conv2, s)
            f = _conv(_relu(_bn(f, block.bn3)), block.conv3, 1)
        else:
            f = _conv(_relu(_bn(f, block.bn2)), block.conv2, 1)
        if block.shortcut == "none":
            return np.asarray(f)
        if block.projects:  # the 2016 code projects the activated input, with no BN
            return np.asarray(f + _conv(a, block.shortcut_conv, s))
        return np.asarray(f + _identity_shortcut(x, block))
    if block.shortcut == "none":
        return _relu(f)
    if block.projects:
        return _relu(f + _bn(_conv(x, block.shortcut_conv, s), block.shortcut_bn))
    return _relu(f + _identity_shortcut(x, block))


# --- Shapes and the notes' examples ----------------------------------------------------------


def test_basic_block_128_maps_64_channels_to_128_with_a_projection_shortcut():
    block = BasicBlock(128)
    y = _run(block, _x((2, 32, 32, 64)))
    assert y.shape == (2, 32, 32, 128)
    assert block.projects
    assert tuple(block.shortcut_conv.kernel.shape) == (1, 1, 64, 128)
    assert any("shortcut_conv" in path for path in _weight_paths(block))
    assert any("shortcut_bn" in path for path in _weight_paths(block))


def test_bottleneck_128_maps_256_channels_to_512_as_in_the_note():
    block = Bottleneck(128)
    y = _run(block, _x((2, 32, 32, 256)))
    assert y.shape == (2, 32, 32, 512)
    assert tuple(block.conv1.kernel.shape) == (1, 1, 256, 128)
    assert tuple(block.conv2.kernel.shape) == (3, 3, 128, 128)
    assert tuple(block.conv3.kernel.shape) == (1, 1, 128, 512)


@pytest.mark.parametrize(
    ("cls", "filters", "out_channels"),
    [
        (BasicBlock, 32, 32),
        (Bottleneck, 4, 16),
        (PreActBasicBlock, 32, 32),
        (PreActBottleneck, 4, 16),
    ],
)
def test_stride_2_halves_height_and_width(cls, filters, out_channels):
    y = _run(cls(filters, strides=2), _x((2, 8, 8, 16)))
    assert y.shape == (2, 4, 4, out_channels)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_stride_2_on_odd_sides_rounds_up_like_pytorch(shortcut):
    # PyTorch: floor((9 + 2*1 - 3) / 2) + 1 = 5, for the branch and the 1x1/2 shortcut alike.
    block = BasicBlock(32, strides=2, shortcut=shortcut)
    y = _run(block, _x((2, 9, 9, 16)))
    assert y.shape == (2, 5, 5, 32)
    assert block.compute_output_shape((2, 9, 9, 16)) == (2, 5, 5, 32)


def test_output_shape_is_inferred_for_unknown_spatial_sizes():
    inputs = keras.Input((None, None, 16))
    outputs = BasicBlock(32, strides=2)(inputs)
    assert tuple(outputs.shape) == (None, None, None, 32)
    model = keras.Model(inputs, outputs)
    assert np.asarray(model(_x((1, 12, 10, 16)))).shape == (1, 6, 5, 32)


@pytest.mark.parametrize(
    ("cls", "filters", "channels"),
    [(PreActBasicBlock, 16, 16), (PreActBasicBlock, 32, 16), (PreActBottleneck, 4, 16)],
)
def test_pre_activation_blocks_output_filters_times_expansion_channels(cls, filters, channels):
    y = _run(cls(filters), _x((2, 8, 8, channels)))
    assert y.shape == (2, 8, 8, filters * cls.expansion)


# --- Shortcuts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "filters"), [(BasicBlock, 16), (Bottleneck, 4)])
def test_shortcut_b_is_the_identity_when_shapes_match(cls, filters):
    block = cls(filters)
    x = _x((2, 8, 8, 16))
    _randomize_batch_norms(block)
    y = _run(block, x)
    assert not block.projects
    assert not hasattr(block, "shortcut_conv")
    assert not any("shortcut" in path for path in _weight_paths(block))
    _assert_close(y, _reference(block, x))


def test_shortcut_a_has_no_parameters_even_when_the_shape_changes():
    block = BasicBlock(32, strides=2, shortcut="A")
    _run(block, _x((2, 8, 8, 16)))
    assert not block.projects
    assert not any("shortcut" in path for path in _weight_paths(block))
    # Only the branch: two 3x3 convolutions and two BNs (gamma and beta trainable).
    assert _trainable_count(block) == 9 * 16 * 32 + 9 * 32 * 32 + 2 * (2 * 32)


def test_shortcut_a_subsamples_and_zero_pads_channels():
    # zero_init_residual zeroes the last BN's gamma (and beta starts at 0): the branch is 0, so
    # the block outputs ReLU(shortcut(x)) and shows the shortcut alone.
    block = BasicBlock(32, strides=2, shortcut="A", zero_init_residual=True)
    x = _x((2, 8, 8, 16))
    y = _run(block, x)
    expected = np.zeros((2, 4, 4, 32), "float32")
    expected[..., :16] = np.maximum(x[:, ::2, ::2, :], 0.0)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize(("cls", "filters"), [(BasicBlock, 16), (Bottleneck, 4)])
def test_shortcut_c_projects_even_when_shapes_match(cls, filters):
    block = cls(filters, shortcut="C")
    x = _x((2, 8, 8, 16))
    _randomize_batch_norms(block)
    y = _run(block, x)
    assert block.projects
    assert tuple(block.shortcut_conv.kernel.shape) == (1, 1, 16, 16)
    assert tuple(block.shortcut_bn.gamma.shape) == (16,)
    _assert_close(y, _reference(block, x))


@pytest.mark.parametrize(("strides", "channels"), [(1, 32), (2, 16)])
def test_shortcut_none_outputs_relu_of_the_residual_branch_alone(strides, channels):
    block = BasicBlock(32, strides=strides, shortcut="none")
    x = _x((2, 8, 8, channels))
    _randomize_batch_norms(block)
    y = _run(block, x)
    assert not any("shortcut" in path for path in _weight_paths(block))
    branch = _bn(
        _conv(_relu(_bn(_conv(x, block.conv1, strides), block.bn1)), block.conv2, 1), block.bn2
    )
    _assert_close(y, _relu(branch))
    if strides == 1:  # with an identity shortcut the same weights would give ReLU(F(x) + x)
        assert not np.allclose(y, _relu(branch + x), atol=1e-2)


def test_pre_activation_shortcut_none_returns_the_branch_without_a_final_relu():
    block = PreActBasicBlock(16, shortcut="none")
    x = _x((2, 8, 8, 16))
    _randomize_batch_norms(block)
    y = _run(block, x)
    assert (y < 0).any()
    _assert_close(y, _reference(block, x))


def test_pre_activation_projection_is_a_bare_convolution():
    block = PreActBasicBlock(32, strides=2)
    _run(block, _x((2, 8, 8, 16)))
    assert block.projects
    assert tuple(block.shortcut_conv.kernel.shape) == (1, 1, 16, 32)
    assert not hasattr(block, "shortcut_bn")
    assert not any("shortcut_bn" in path for path in _weight_paths(block))


# --- Numbers equal to the note's PyTorch modules -----------------------------------------------


@pytest.mark.parametrize(
    ("cls", "filters", "strides", "shortcut", "channels"),
    [
        (BasicBlock, 32, 2, "B", 16),
        (BasicBlock, 32, 2, "A", 16),
        (BasicBlock, 16, 1, "B", 16),
        (Bottleneck, 4, 2, "B", 16),
        (Bottleneck, 4, 1, "C", 16),
        (PreActBasicBlock, 32, 2, "B", 16),
        (PreActBasicBlock, 16, 1, "B", 16),
        (PreActBottleneck, 4, 2, "B", 16),
        (PreActBottleneck, 4, 1, "B", 16),
    ],
)
def test_inference_output_matches_a_pytorch_style_reference(
    cls, filters, strides, shortcut, channels
):
    block = cls(filters, strides=strides, shortcut=shortcut)
    x = _x((2, 8, 8, channels))
    block.build(x.shape)
    _randomize_batch_norms(block)
    _assert_close(_run(block, x), _reference(block, x))


def _torch_conv(kernel, strides=1):
    conv = TorchConv2D(kernel.shape[-1], kernel.shape[:2], strides=strides, use_bias=False)
    conv.build((None, None, None, kernel.shape[2]))
    conv.kernel.assign(kernel)
    return conv


def test_torch_conv2d_equals_lax_conv_with_symmetric_padding():
    x = _x((2, 8, 8, 16))
    kernel = _x((3, 3, 16, 32), seed=1)
    ours = np.asarray(_torch_conv(kernel, strides=2)(x))
    torch_like = np.asarray(
        jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(2, 2),
            padding=((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
    )
    assert ours.shape == (2, 4, 4, 32)
    np.testing.assert_allclose(ours, torch_like, rtol=1e-5, atol=1e-5)
    # Keras's "same" pads only bottom/right on even stride-2 inputs: different numbers.
    same = layers.Conv2D(32, 3, 2, padding="same", use_bias=False, kernel_initializer="zeros")
    same.build(x.shape)
    same.kernel.assign(kernel)
    assert not np.allclose(np.asarray(same(x)), torch_like, atol=1e-3)


@pytest.mark.parametrize(("kernel_size", "pad"), [(1, 0), (3, 1), (7, 3)])
def test_torch_conv2d_pads_kernel_size_floor_half_on_both_sides(kernel_size, pad):
    # A kernel that picks its top-left tap reads padded[i, j] = x[i - pad, j - pad]: the output
    # keeps the input's size (2 * pad in all) and is x shifted down and right by pad.
    kernel = np.zeros((kernel_size, kernel_size, 1, 1), "float32")
    kernel[0, 0] = 1.0
    x = _x((1, 9, 10, 1))
    y = np.asarray(_torch_conv(kernel)(x))
    assert y.shape == x.shape
    np.testing.assert_array_equal(y[:, pad:, pad:], x[:, : 9 - pad, : 10 - pad])
    np.testing.assert_array_equal(y[:, :pad], 0.0)
    np.testing.assert_array_equal(y[:, :, :pad], 0.0)


@pytest.mark.parametrize(("side", "out"), [(8, 4), (9, 5), (None, None)])
def test_torch_conv2d_output_shape_follows_pytorchs_formula(side, out):
    # floor((side + 2 * 1 - 3) / 2) + 1
    conv = TorchConv2D(4, 3, strides=2)
    assert conv.compute_output_shape((2, side, side, 3)) == (2, out, out, 4)


def test_torch_conv2d_round_trips_through_keras_serialization():
    conv = TorchConv2D(8, 7, strides=2, use_bias=False, name="stem_conv")
    serialized = keras.saving.serialize_keras_object(conv)
    assert serialized["registered_name"] == "keras_resnet>TorchConv2D"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is TorchConv2D
    assert clone.get_config() == conv.get_config()
    assert (clone.kernel_size, clone.strides, clone.use_bias) == ((7, 7), (2, 2), False)


def test_torch_conv2d_refuses_another_padding_or_layout():
    with pytest.raises(ValueError, match="pads as PyTorch does"):
        TorchConv2D(8, 3, padding="same")
    with pytest.raises(ValueError, match="NHWC only, got 'channels_first'"):
        TorchConv2D(8, 3, data_format="channels_first")


def test_stride_2_first_convolution_pads_one_pixel_on_every_side():
    block = BasicBlock(32, strides=2)
    x = _x((2, 8, 8, 16))
    block.build(x.shape)
    assert isinstance(block.conv1, TorchConv2D)
    first = np.asarray(block.conv1(x))
    np.testing.assert_allclose(first, _conv(x, block.conv1, 2), rtol=1e-5, atol=1e-5)


# --- zero_init_residual ------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "filters"), [(PreActBasicBlock, 16), (PreActBottleneck, 4)])
@pytest.mark.parametrize("training", [False, True])
def test_zero_init_residual_makes_a_pre_activation_block_exactly_the_identity(
    cls, filters, training
):
    block = cls(filters, zero_init_residual=True)
    x = _x((2, 8, 8, 16))
    np.testing.assert_array_equal(_run(block, x, training=training), x)


def test_pre_activation_block_without_zero_init_is_not_the_identity():
    x = _x((2, 8, 8, 16))
    assert not np.allclose(_run(PreActBasicBlock(16), x), x, atol=1e-3)


@pytest.mark.parametrize(
    ("cls", "filters", "last_bn"), [(BasicBlock, 16, "bn2"), (Bottleneck, 4, "bn3")]
)
def test_zero_init_residual_zeroes_only_the_last_batch_norm_gamma(cls, filters, last_bn):
    block = cls(filters, strides=2, zero_init_residual=True)
    block.build((None, 8, 8, 16))
    for bn in _sublayers(block, layers.BatchNormalization):
        expected = 0.0 if bn.name == last_bn else 1.0
        np.testing.assert_array_equal(np.asarray(bn.gamma), expected, err_msg=bn.name)


# --- Settings: BatchNorm, convolutions, initialiser --------------------------------------------


# Filters chosen so tests reuse a few kernel shapes: each new shape costs a JAX compile.
FILTERS = {BasicBlock: 16, Bottleneck: 4, PreActBasicBlock: 16, PreActBottleneck: 4}


@pytest.mark.parametrize(
    ("cls", "n_bn"),
    [(BasicBlock, 3), (Bottleneck, 4), (PreActBasicBlock, 2), (PreActBottleneck, 3)],
)
def test_every_batch_norm_uses_momentum_0_9_and_epsilon_1e_5(cls, n_bn):
    block = cls(FILTERS[cls], strides=2, shortcut="C")
    block.build((None, 8, 8, 16))
    bns = _sublayers(block, layers.BatchNormalization)
    assert len(bns) == n_bn
    for bn in bns:
        assert bn.momentum == pytest.approx(0.9), bn.name
        assert bn.epsilon == pytest.approx(1e-5), bn.name


@pytest.mark.parametrize("cls", ALL_BLOCKS)
def test_every_convolution_is_bias_free(cls):
    block = cls(FILTERS[cls], strides=2, shortcut="C")
    block.build((None, 8, 8, 16))
    convs = _sublayers(block, layers.Conv2D)
    assert len(convs) == (4 if cls.expansion == 4 else 3)
    for conv in convs:
        assert conv.use_bias is False, conv.name
        assert conv.bias is None, conv.name
        assert [w.path.rsplit("/", 1)[-1] for w in conv.weights] == ["kernel"]


def test_convolution_kernels_start_he_normal_over_fan_out():
    # conv1 of a 64 -> 128 block: fan_in = 3*3*64 = 576, fan_out = 3*3*128 = 1152, so the
    # fan-in std (0.059) and the fan-out std (0.042) are far apart.
    block = BasicBlock(128)
    block.build((None, 8, 8, 64))
    kernel = np.asarray(block.conv1.kernel)
    assert kernel.shape == (3, 3, 64, 128)
    expected_std = np.sqrt(2.0 / (3 * 3 * 128))
    assert kernel.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(kernel.mean()) < 0.05 * expected_std
    # Untruncated: a normal sample of 74k values reaches beyond 3.5 standard deviations.
    assert np.abs(kernel).max() > 3.5 * expected_std


def test_kernel_initializer_starts_every_convolution_of_the_block():
    # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = 3*3*64 for conv1.
    block = BasicBlock(128, kernel_initializer=TORCH_DEFAULT_INITIALIZER)
    block.build((None, 8, 8, 64))
    for conv in _sublayers(block, layers.Conv2D):
        kernel = np.asarray(conv.kernel)
        bound = 1.0 / np.sqrt(np.prod(kernel.shape[:3]))
        assert np.abs(kernel).max() <= bound * (1 + 1e-6), conv.name  # float32
        assert np.abs(kernel).max() > 0.95 * bound, conv.name
        assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05), conv.name


def test_each_convolution_draws_its_own_kernel():
    block = BasicBlock(16)
    block.build((None, 8, 8, 16))
    assert block.conv1.kernel.shape == block.conv2.kernel.shape
    assert not np.allclose(np.asarray(block.conv1.kernel), np.asarray(block.conv2.kernel))


@pytest.mark.parametrize("cls", ALL_BLOCKS)
def test_a_config_saved_without_kernel_initializer_loads_with_he_normal_fan_out(cls):
    # Files written before the argument existed lack the key.
    config = cls(16).get_config()
    del config["kernel_initializer"]
    block = cls.from_config(config)
    assert block.get_config()["kernel_initializer"] == keras.initializers.serialize(
        keras.initializers.get(HE_NORMAL_FAN_OUT_INITIALIZER)
    )


# --- Config round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_BLOCKS)
def test_get_config_round_trips_through_from_config(cls):
    block = cls(
        24,
        strides=2,
        shortcut="C",
        zero_init_residual=True,
        kernel_initializer=TORCH_DEFAULT_INITIALIZER,
        name="my_block",
    )
    config = block.get_config()
    keys = ("filters", "strides", "shortcut", "zero_init_residual")
    assert {k: config[k] for k in keys} == {
        "filters": 24,
        "strides": 2,
        "shortcut": "C",
        "zero_init_residual": True,
    }
    initializer = keras.initializers.deserialize(config["kernel_initializer"])
    assert initializer.get_config() == {
        "seed": None,
        "scale": pytest.approx(1 / 3),
        "mode": "fan_in",
        "distribution": "uniform",
        "input_axes": None,
        "output_axes": None,
    }
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config


@pytest.mark.parametrize("cls", ALL_BLOCKS)
def test_blocks_are_registered_for_keras_serialization(cls):
    block = cls(8, shortcut="A")
    serialized = keras.saving.serialize_keras_object(block)
    assert serialized["registered_name"] == f"keras_resnet>{cls.__name__}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is cls
    assert clone.get_config() == block.get_config()


# --- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("filters", [0, 2.5, "64"])
def test_filters_must_be_a_positive_int(filters):
    with pytest.raises(ValueError, match=re.escape(f"got {filters!r}")):
        BasicBlock(filters)


def test_strides_must_be_1_or_2():
    for cls in ALL_BLOCKS:
        with pytest.raises(ValueError, match=rf"{cls.__name__}: strides must be 1 or 2, got 3"):
            cls(16, strides=3)


def test_unknown_shortcut_is_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown shortcut 'D'; valid: A, B, C, none"):
        BasicBlock(16, shortcut="D")


def test_a_3d_input_is_rejected_with_its_shape():
    with pytest.raises(ValueError, match=re.escape("4-D") + ".*" + re.escape("(32, 32, 64)")):
        BasicBlock(64)(_x((32, 32, 64)))


def test_an_unknown_channel_count_is_rejected():
    with pytest.raises(ValueError, match=re.escape("(None, 8, 8, None)")):
        BasicBlock(16).build((None, 8, 8, None))


def test_shortcut_a_cannot_reduce_channels():
    with pytest.raises(ValueError, match=r"shortcut 'A' can only add channels.*maps 32 to 16"):
        BasicBlock(16, shortcut="A")(_x((1, 8, 8, 32)))
