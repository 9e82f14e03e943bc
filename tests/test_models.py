"""The model registry: parameter counts, names, shapes, options, saving, errors and the backend.

On CPU every new tensor shape costs a JAX compile (weight initialisers included), so tests that
only inspect structure build a ``_skeleton`` and forward passes reuse a few models and sizes.
"""

import re

import keras
import numpy as np
import pytest
from helpers import run_python
from keras import layers

from keras_resnet import build, get_spec, list_models
from keras_resnet.blocks import BasicBlock, Bottleneck, PreActBasicBlock
from keras_resnet.models import parameter_count

# SPEC.md section 2: (trainable, with BN moving statistics), 10 classes.
NOTE_COUNTS = {
    "resnet18": (11_173_962, 11_183_562),
    "resnet34": (21_282_122, 21_299_146),
    "resnet50": (23_520_842, 23_573_962),
    "resnet101": (42_512_970, 42_618_314),
    "resnet152": (58_156_618, 58_308_042),
}


def _skeleton(name, **kwargs):
    """``build(name, **kwargs)`` with every weight created at its shape but never initialised.

    ``keras.StatelessScope(initialize_variables=False)`` defers the initialisers, so counting
    parameters or reading names and shapes costs no random-number compiles.
    """
    with keras.StatelessScope(initialize_variables=False):
        return build(name, **kwargs)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def _predict(model, x):
    return np.asarray(model(x, training=False))


def _blocks(model):
    return [layer for layer in model.layers if re.fullmatch(r"stage\d+_block\d+", layer.name)]


def _randomize_batch_norm_statistics(model, seed=1):
    """Non-trivial moving statistics, so a round trip that lost them would change predictions."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            (c,) = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))


def _paper_counts(n, num_classes=10):
    """(trainable, total) of the 2015 paper's 6n+2 CIFAR net with option-A shortcuts."""
    widths = (16, 32, 64)
    trainable = 3 * 3 * 3 * 16 + 2 * 16  # stem conv (no bias) and its BN's gamma, beta
    bn_channels = 16
    c_in = 16
    for width in widths:
        for _ in range(n):
            trainable += 9 * c_in * width + 9 * width * width + 2 * (2 * width)
            bn_channels += 2 * width
            c_in = width
    trainable += 64 * num_classes + num_classes
    return trainable, trainable + 2 * bn_channels  # + BN moving mean and variance


# --- Parameter counts --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NOTE_COUNTS))
def test_parameter_counts_equal_the_notes_table(name):
    model = _skeleton(name)
    trainable, total = NOTE_COUNTS[name]
    assert _trainable(model) == trainable
    assert model.count_params() == total


def test_resnet20_has_269_722_trainable_parameters():
    assert _trainable(_skeleton("resnet20")) == 269_722


@pytest.mark.parametrize(
    ("name", "n"),
    [
        ("resnet20", 3),
        ("resnet32", 5),
        ("resnet44", 7),
        ("resnet56", 9),
        ("resnet110", 18),
        pytest.param("resnet1202", 200, marks=pytest.mark.slow),
    ],
)
def test_paper_cifar_nets_have_the_6n_plus_2_parameter_count(name, n):
    model = _skeleton(name)
    assert (_trainable(model), model.count_params()) == _paper_counts(n)


def test_paper_count_formula_gives_the_papers_0_27m_for_resnet20():
    assert _paper_counts(3) == (269_722, 271_098)
    assert _paper_counts(200)[0] == 19_421_274  # ResNet-1202: the paper's 19.4M


@pytest.mark.parametrize(("plain", "resnet"), [("plain20", "resnet20"), ("plain56", "resnet56")])
def test_plain_nets_have_the_parameters_of_their_option_a_resnet(plain, resnet):
    plain_model, resnet_model = _skeleton(plain), _skeleton(resnet)
    assert _trainable(plain_model) == _trainable(resnet_model)
    assert plain_model.count_params() == resnet_model.count_params()


def test_plain18_lacks_exactly_the_three_projection_shortcuts_of_resnet18():
    # 1x1 conv (no bias) + BN gamma/beta for 64->128, 128->256 and 256->512.
    projections = sum(
        c_in * c_out + 2 * c_out for c_in, c_out in [(64, 128), (128, 256), (256, 512)]
    )
    assert projections == 173_824
    assert _trainable(_skeleton("resnet18")) - _trainable(_skeleton("plain18")) == projections


@pytest.mark.parametrize(
    ("name", "torchvision"), [("resnet18", 11_689_512), ("resnet50", 25_557_032)]
)
def test_imagenet_form_has_torchvisions_parameter_count(name, torchvision):
    # PyTorch's parameters are our trainable weights: BN running statistics are buffers there.
    model = _skeleton(name, stem="imagenet", input_shape=(224, 224, 3), num_classes=1000)
    assert _trainable(model) == torchvision
    assert tuple(model.get_layer("stem_conv").kernel.shape) == (7, 7, 3, 64)
    assert model.output_shape == (None, 1000)


def test_imagenet_backbone_downsamples_224_to_7():
    model = _skeleton("resnet50", stem="imagenet", input_shape=(224, 224, 3), include_top=False)
    assert model.output_shape == (None, 7, 7, 2048)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *((name, counts[0]) for name, counts in NOTE_COUNTS.items()),
        ("resnet20", 269_722),
        ("resnet1202", _paper_counts(200)[0]),
        ("plain56", _paper_counts(9)[0]),
    ],
)
def test_parameter_count_gives_the_trainable_parameters_of_the_built_model(name, expected):
    assert parameter_count(name) == expected


def test_parameter_count_follows_num_classes():
    # A 100-way head adds 90 more rows of 512 weights and 90 biases to resnet18's 10-way one.
    assert parameter_count("resnet18", 100) == 11_173_962 + 90 * 512 + 90


@pytest.mark.parametrize(  # the two deepest (1,000 and more layers) only with -m slow
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("resnet1202", "preact_resnet1001") else n
        for n in list_models()
    ],
)
def test_the_counted_parameters_are_those_keras_builds_for_every_registered_model(name):
    assert parameter_count(name) == _trainable(_skeleton(name))


@pytest.mark.parametrize(
    "overrides",
    [
        {"shortcut": "C"},
        {"shortcut": "B", "block": "preact_bottleneck"},
        {"stem": "imagenet", "block": "preact_basic"},
        {"stem": "imagenet", "block": "bottleneck", "shortcut": "none"},
        {"widths": (8, 24), "depths": (2, 1), "block": "preact_basic", "shortcut": "C"},
    ],
)
def test_the_counted_parameters_follow_every_spec_field(overrides):
    built = _skeleton("resnet20", num_classes=7, input_shape=(64, 64, 4), **overrides)
    assert parameter_count("resnet20", 7, channels=4, **overrides) == _trainable(built)


def test_shortcut_override_b_adds_the_two_projections_to_resnet20():
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert _trainable(_skeleton("resnet20", shortcut="B")) == 269_722 + extra


# --- The registry ------------------------------------------------------------------------------


def test_every_documented_model_is_registered():
    documented = {
        *("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
        *("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"),
        *("plain18", "plain34", "plain20", "plain32", "plain44", "plain56"),
        *("preact_resnet18", "preact_resnet34", "preact_resnet110", "preact_resnet164"),
    }
    names = list_models()
    assert names == sorted(names)
    assert documented <= set(names)


def test_every_registered_name_states_its_depth():
    # Weighted layers: 2 per basic block, 3 per bottleneck, plus the stem conv and the dense head.
    depths = {}
    for name in list_models():
        spec = get_spec(name)
        per_block = 3 if "bottleneck" in spec.block else 2
        depths[name] = per_block * sum(spec.depths) + 2
    assert depths == {name: int(re.search(r"\d+$", name).group()) for name in list_models()}


def test_registered_specs_follow_the_papers():
    wide, paper = (64, 128, 256, 512), (16, 32, 64)
    expected = {
        "resnet18": ("basic", "B", wide, (2, 2, 2, 2)),
        "resnet50": ("bottleneck", "B", wide, (3, 4, 6, 3)),
        "resnet20": ("basic", "A", paper, (3, 3, 3)),
        "plain34": ("basic", "none", wide, (3, 4, 6, 3)),
        "preact_resnet164": ("preact_bottleneck", "B", paper, (18, 18, 18)),
    }
    specs = {name: get_spec(name) for name in expected}
    assert {n: (s.block, s.shortcut, s.widths, s.depths) for n, s in specs.items()} == expected
    assert {s.stem for s in specs.values()} == {"cifar"}


def test_overrides_do_not_change_the_registered_spec():
    assert get_spec("resnet18", shortcut="C", stem="imagenet").shortcut == "C"
    _skeleton("resnet20", shortcut="B", zero_init_residual=True)
    spec = get_spec("resnet20")
    assert (spec.shortcut, spec.zero_init_residual) == ("A", False)


def test_resnet18_layer_names_are_stable():
    model = _skeleton("resnet18")
    assert [layer.name for layer in _blocks(model)] == [
        f"stage{s}_block{b}" for s in range(1, 5) for b in range(2)
    ]
    assert tuple(model.get_layer("stem_conv").kernel.shape) == (3, 3, 3, 64)
    assert isinstance(model.get_layer("stage1_block0"), BasicBlock)
    assert model.get_layer("stage4_block1").filters == 512
    assert model.get_layer("stage4_block0").strides == 2
    assert model.get_layer("predictions").units == 10
    assert model.layers[-1].name == "predictions"


def test_block_types_follow_the_spec():
    assert isinstance(_skeleton("resnet50").get_layer("stage3_block5"), Bottleneck)
    assert isinstance(_skeleton("preact_resnet18").get_layer("stage2_block1"), PreActBasicBlock)


# --- Forward passes and shapes -----------------------------------------------------------------


def test_resnet34_maps_two_cifar_images_to_ten_logits():
    logits = _predict(build("resnet34"), _images())
    assert logits.shape == (2, 10)
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])


def test_backbone_without_top_returns_the_4x4x512_feature_map():
    features = _predict(build("resnet18", include_top=False), _images())
    assert features.shape == (2, 4, 4, 512)
    assert (features >= 0).all()  # the last block ends with a ReLU


@pytest.mark.parametrize(("pooling", "reduce"), [("avg", np.mean), ("max", np.max)])
def test_backbone_pooling_reduces_the_feature_map_to_a_vector(pooling, reduce):
    backbone = build("resnet8", include_top=False)  # any net pools alike: a small one
    pooled_model = build("resnet8", include_top=False, pooling=pooling)
    pooled_model.set_weights(backbone.get_weights())
    x = _images()
    pooled = _predict(pooled_model, x)
    assert pooled.shape == (2, 64)
    np.testing.assert_allclose(
        pooled, reduce(_predict(backbone, x), axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


def test_the_classifier_accepts_64x64_inputs():
    model = build("resnet20", input_shape=(64, 64, 3))
    assert _predict(model, _images(size=64)).shape == (2, 10)


def test_a_variable_size_model_accepts_32_and_48_pixel_inputs():
    model = build("resnet20", input_shape=(None, None, 3))
    assert model.input_shape == (None, None, None, 3)
    assert _predict(model, _images(size=32)).shape == (2, 10)
    assert _predict(model, _images(size=48)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (4, 4, 3)}, "input_shape (4, 4, 3) is too small for resnet18"),
        ({"input_shape": (32, 7, 3)}, "at least 8 pixels"),
        ({"input_shape": (16, 16, 3), "stem": "imagenet"}, "at least 32 pixels"),
    ],
)
def test_an_input_smaller_than_the_downsampling_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build("resnet18", **kwargs)


def test_softmax_head_gives_probabilities_equal_to_softmax_of_the_logits():
    logits_model = build("resnet20")
    probs_model = build("resnet20", classifier_activation="softmax")
    probs_model.set_weights(logits_model.get_weights())
    x = _images()
    probs = _predict(probs_model, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    logits = _predict(logits_model, x).astype("float64")
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_the_head_outputs_float32_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build("resnet20")
        assert model.get_layer("stage1_block0").compute_dtype == "bfloat16"
        assert model.get_layer("predictions").compute_dtype == "float32"
        assert model.output.dtype == "float32"
        logits = model(_images(), training=False)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert np.isfinite(np.asarray(logits)).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


NORMALIZATION = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_input_normalization_is_the_first_layer_and_maps_raw_pixels():
    model = build("resnet20", input_normalization=NORMALIZATION)
    assert model.layers[1].name == "normalize"
    first = keras.Model(model.input, model.layers[1].output)
    raw = np.empty((1, 32, 32, 3), "float32")
    raw[..., 0], raw[..., 1], raw[..., 2] = 127.5, 191.25, 63.75  # mean, mean + std, mean - std
    out = np.asarray(first(raw))
    np.testing.assert_allclose(out[..., 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[..., 2], -1.0, atol=1e-6)


def test_input_normalization_equals_normalising_by_hand_with_the_same_weights():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    raw_model = build("resnet20", input_normalization=(mean, std))
    plain_model = build("resnet20")
    for layer in plain_model.layers:
        if layer.weights:
            layer.set_weights(raw_model.get_layer(layer.name).get_weights())
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    by_hand = (pixels / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(
        _predict(raw_model, pixels),
        _predict(plain_model, by_hand.astype("float32")),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("name", ["resnet18", "resnet20"])
def test_zero_init_residual_override_zeroes_the_last_batch_norm_of_every_block(name):
    # (Bottleneck's bn3 is covered in test_blocks.py; here: the override reaches every block.)
    blocks = _blocks(build(name, zero_init_residual=True))
    assert len(blocks) == (8 if name == "resnet18" else 9)
    for block in blocks:
        np.testing.assert_array_equal(np.asarray(block.bn2.gamma), 0.0, err_msg=block.name)
        np.testing.assert_array_equal(np.asarray(block.bn1.gamma), 1.0, err_msg=block.name)
    for block in _blocks(build(name)):
        np.testing.assert_array_equal(np.asarray(block.bn2.gamma), 1.0, err_msg=block.name)


# --- Initialisation, as each source did it ----------------------------------------------------

NOTES_NETS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34"}
NOTES_NETS |= {"preact_resnet18", "preact_resnet34"}


def test_each_registered_net_starts_as_its_source_did():
    # The notes and kuangliu/pytorch-cifar leave PyTorch's defaults; the 2015 paper uses He.
    assert {name: get_spec(name).initializer for name in list_models()} == {
        name: "torch" if name in NOTES_NETS else "he" for name in list_models()
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"stem": "imagenet"}, "torchvision"),
        ({"stem": "imagenet", "initializer": "torch"}, "torch"),
        ({"initializer": "he"}, "he"),
        ({"stem": "cifar"}, "torch"),
    ],
)
def test_the_imagenet_stem_implies_torchvisions_initialisation_unless_overridden(
    overrides, expected
):
    assert get_spec("resnet18", **overrides).initializer == expected
    assert get_spec("resnet20", **overrides).initializer == (
        "he" if expected == "torch" and "initializer" not in overrides else expected
    )


def _torch_layer(kind, *args, he_fan_out=False):
    """A freshly built ``torch.nn.<kind>(*args)``; torchvision's ResNet re-initialises every
    Conv2d with ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(*args)
    if he_fan_out:
        torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


def _assert_distributed_like(ours, theirs, rel=0.03):
    """The same spread and reach as PyTorch's: He-normal has 2.4 times the spread of PyTorch's
    default (and fan-in vs fan-out differ by sqrt(2) in these layers), and a normal sample of
    this size reaches about three times farther than a uniform one of equal spread."""
    ours, theirs = np.asarray(ours).ravel(), theirs.detach().numpy().ravel()
    assert ours.size == theirs.size
    assert ours.std() == pytest.approx(theirs.std(), rel=rel)
    assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.15)
    assert abs(ours.mean()) < 0.05 * theirs.std()


# stage4_block0.conv1 maps 256 to 512 channels: fan-in 2304 and fan-out 4608 differ.
CONV_256_512 = ("Conv2d", 256, 512, 3)


@pytest.fixture(scope="module")
def notes_resnet18():
    keras.utils.set_random_seed(0)
    return build("resnet18", num_classes=1000)


def _batch_norms_start_at_one_and_zero(model):
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            np.testing.assert_array_equal(np.asarray(layer.gamma), 1.0, err_msg=layer.name)
            np.testing.assert_array_equal(np.asarray(layer.beta), 0.0, err_msg=layer.name)


def test_the_notes_resnet18_starts_with_pytorchs_default_conv_and_linear(notes_resnet18):
    model = notes_resnet18
    conv = model.get_layer("stage4_block0").conv1.kernel
    _assert_distributed_like(conv, _torch_layer(*CONV_256_512).weight)
    head = model.get_layer("predictions")
    _assert_distributed_like(head.kernel, _torch_layer("Linear", 512, 1000).weight)
    _assert_distributed_like(head.bias, _torch_layer("Linear", 512, 1000).bias, rel=0.1)
    assert np.abs(np.asarray(head.bias)).max() <= (1 + 1e-6) / np.sqrt(512)
    _batch_norms_start_at_one_and_zero(model)


def test_every_convolution_of_the_notes_nets_stays_within_pytorchs_uniform_bound(
    notes_resnet18,
):
    convs = [
        layer
        for layer in notes_resnet18._flatten_layers(include_self=False)
        if isinstance(layer, layers.Conv2D)
    ]
    assert len(convs) == 1 + 2 * 8 + 3  # the stem, two per block and three projections
    for conv in convs:
        kernel = np.asarray(conv.kernel)
        bound = 1 / np.sqrt(np.prod(kernel.shape[:3]))
        assert np.abs(kernel).max() <= bound * (1 + 1e-6), conv.name  # float32
        assert np.abs(kernel).max() > 0.9 * bound, conv.name


def test_the_head_of_a_saved_notes_net_keeps_pytorchs_bias_initializer(notes_resnet18):
    config = keras.saving.serialize_keras_object(notes_resnet18.get_layer("predictions"))
    head = keras.saving.deserialize_keras_object(config)
    bias = head.bias_initializer
    assert isinstance(bias, keras.initializers.RandomUniform)
    assert (bias.minval, bias.maxval) == pytest.approx((-1 / np.sqrt(512), 1 / np.sqrt(512)))


def test_the_papers_resnet20_keeps_he_normal_fan_out_and_a_zero_bias():
    keras.utils.set_random_seed(0)
    model = build("resnet20")
    # stage3_block0.conv1 maps 32 to 64 channels: fan-in 288, fan-out 576.
    kernel = model.get_layer("stage3_block0").conv1.kernel
    _assert_distributed_like(kernel, _torch_layer("Conv2d", 32, 64, 3, he_fan_out=True).weight)
    np.testing.assert_array_equal(np.asarray(model.get_layer("predictions").bias), 0.0)
    _batch_norms_start_at_one_and_zero(model)


def test_the_imagenet_form_starts_as_torchvisions_resnet():
    keras.utils.set_random_seed(0)
    model = build("resnet18", stem="imagenet", input_shape=(224, 224, 3), num_classes=1000)
    stem = model.get_layer("stem_conv").kernel
    _assert_distributed_like(stem, _torch_layer("Conv2d", 3, 64, 7, he_fan_out=True).weight)
    conv = model.get_layer("stage4_block0").conv1.kernel
    _assert_distributed_like(conv, _torch_layer(*CONV_256_512, he_fan_out=True).weight)
    head = model.get_layer("predictions")
    _assert_distributed_like(head.kernel, _torch_layer("Linear", 512, 1000).weight)
    _assert_distributed_like(head.bias, _torch_layer("Linear", 512, 1000).bias, rel=0.1)
    _batch_norms_start_at_one_and_zero(model)


def test_the_initializer_override_replaces_the_registered_one():
    keras.utils.set_random_seed(0)
    model = build("resnet18", initializer="he")
    conv = model.get_layer("stage4_block0").conv1.kernel
    _assert_distributed_like(conv, _torch_layer(*CONV_256_512, he_fan_out=True).weight)
    np.testing.assert_array_equal(np.asarray(model.get_layer("predictions").bias), 0.0)


# --- Saving and loading ------------------------------------------------------------------------


def test_a_backbone_with_a_new_head_round_trips_through_a_keras_file(tmp_path):
    backbone = build("resnet20", include_top=False, pooling="avg")
    inputs = keras.Input((32, 32, 3))
    outputs = layers.Dense(5, name="new_head")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    _randomize_batch_norm_statistics(backbone)
    x = _images()
    expected = _predict(model, x)
    assert expected.shape == (2, 5)
    path = tmp_path / "transfer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_predict(loaded, x), expected)


@pytest.mark.slow  # a fresh process; test_startup loads a saved model in one by default
def test_a_saved_resnet20_predicts_identically_in_a_fresh_process(tmp_path):
    model = build("resnet20")
    _randomize_batch_norm_statistics(model)
    x = _images()
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "resnet20.keras")
    expected = _predict(model, x)
    result = run_python(
        """
        import numpy as np
        import keras_resnet  # registers the blocks; load_model keeps safe_mode=True
        import keras
        model = keras.saving.load_model("resnet20.keras")
        x = np.load("x.npy")
        np.save("y.npy", np.asarray(model(x, training=False)))
        print(keras.backend.backend(), type(model.get_layer("stage1_block0")).__name__)
        """,
        env_updates={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["jax", "BasicBlock"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


# --- Errors ------------------------------------------------------------------------------------


def test_an_unknown_name_suggests_the_closest_and_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet19'") as info:
        build("resnet19")
    message = str(info.value)
    assert "Did you mean 'resnet18'?" in message
    assert all(name in message for name in list_models())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes must be a positive int, got 0"),
        ({"num_classes": 2.5}, "got 2.5"),
        ({"input_shape": (32, 32)}, "input_shape must be (height, width, channels), got (32, 32)"),
        ({"input_shape": (32, 32, None)}, "(32, 32, None)"),
        ({"stem": "bogus"}, "Unknown stem 'bogus'; valid: cifar, imagenet"),
        ({"initializer": "xavier"}, "Unknown initializer 'xavier'; valid: torch, he, torchvision"),
        ({"pooling": "sum"}, "Unknown pooling 'sum'"),
        ({"shortcut": "D"}, "Unknown shortcut 'D'; valid: A, B, C, none"),
        ({"block": "wide"}, "Unknown block 'wide'"),
        ({"depths": (2, 2, 2)}, "depths=(2, 2, 2)"),
        ({"widht": (8, 16, 32, 64)}, "Unknown argument(s) 'widht' for build('resnet18')"),
    ],
)
def test_invalid_arguments_are_rejected_naming_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build("resnet18", **kwargs)


def test_an_unknown_override_lists_the_valid_overrides():
    with pytest.raises(ValueError, match=r"valid overrides: .*shortcut.*zero_init_residual"):
        build("resnet18", widht=8)


# Feature maps (timm's ``features_only``): index 0 is the stem, 1..N the stages.
@pytest.mark.parametrize(
    ("name", "kwargs", "channels", "reductions"),
    [
        ("resnet18", {}, [64, 64, 128, 256, 512], [1, 1, 2, 4, 8]),
        ("resnet20", {}, [16, 16, 32, 64], [1, 1, 2, 4]),
        ("preact_resnet18", {}, [64, 64, 128, 256, 512], [1, 1, 2, 4, 8]),
        ("preact_resnet164", {}, [16, 64, 128, 256], [1, 1, 2, 4]),
        # timm's resnet50 feature_info: the same channels and reductions.
        ("resnet50", {"stem": "imagenet"}, [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    ],
)
def test_features_only_returns_every_feature_map_its_feature_info_describes(
    name, kwargs, channels, reductions
):
    model = _skeleton(
        name, include_top=False, features_only=True, input_shape=(64, 64, 3), **kwargs
    )
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == reductions
    assert [tuple(output.shape) for output in model.outputs] == [
        (None, 64 // r, 64 // r, c) for c, r in zip(channels, reductions, strict=True)
    ]


def test_out_indices_select_feature_maps_in_order():
    model = _skeleton("resnet18", include_top=False, features_only=True, out_indices=(1, 2, 3, 4))
    assert model.feature_info.module_name() == [f"stage{s}_block1" for s in (1, 2, 3, 4)]
    assert [output.shape[-1] for output in model.outputs] == [64, 128, 256, 512]
    assert not any(layer.name in ("predictions", "avg_pool") for layer in model.layers)


def test_feature_maps_equal_the_classifiers_own_activations():
    classifier = build("resnet8")
    _randomize_batch_norm_statistics(classifier)
    features = build("resnet8", include_top=False, features_only=True)
    for layer in features.layers:
        layer.set_weights(classifier.get_layer(layer.name).get_weights())
    names = features.feature_info.module_name()
    assert names == ["stem_relu", "stage1_block0", "stage2_block0", "stage3_block0"]
    inside = keras.Model(classifier.input, [classifier.get_layer(n).output for n in names])
    x = _images()
    for got, expected in zip(features(x), inside(x), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_pre_activation_stage_maps_are_the_unactivated_sums_as_in_timm():
    model = build("preact_resnet18", include_top=False, features_only=True, out_indices=(0, 4))
    assert model.feature_info.module_name() == ["stem_conv", "stage4_block1"]
    assert "final_bn" not in [layer.name for layer in model.layers]
    stem, last = (np.asarray(m) for m in model(_images()))
    assert stem.min() < 0 and last.min() < 0  # no ReLU after the stem conv or the last unit


def test_a_feature_extractor_keeps_its_feature_info_through_a_keras_file(tmp_path):
    from keras_resnet.models import FeatureExtractor
    from keras_resnet.saving import load_model

    model = build("resnet8", include_top=False, features_only=True, out_indices=(1, 3))
    path = tmp_path / "features.keras"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, FeatureExtractor)
    assert loaded.feature_info == model.feature_info
    assert loaded.feature_info.reduction() == [1, 4]
    x = _images()
    for got, expected in zip(loaded(x), model(x), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_indices": (0, 4)}, "from 0 (the stem) to 3 (the last of resnet20's 3 stages), got"),
        ({"out_indices": (2, 1)}, "increasing feature indices"),
        ({"out_indices": ()}, "got ()"),
        ({"out_indices": (1.0,)}, "got (1.0,)"),
        ({"include_top": True}, "pass include_top=False and no pooling, got include_top=True"),
        ({"pooling": "avg"}, "pooling='avg'"),
    ],
)
def test_bad_feature_options_are_refused_naming_the_value_and_the_valid_range(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build("resnet20", **{"include_top": False, "features_only": True, **kwargs})


def test_out_indices_without_features_only_is_refused():
    with pytest.raises(ValueError, match=re.escape("out_indices=(1,) needs features_only=True")):
        build("resnet20", include_top=False, out_indices=(1,))
