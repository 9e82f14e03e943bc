"""load_torch_weights: a PyTorch ResNet and its Keras copy give the same logits."""

import re

import numpy as np
import pytest

import keras_resnet
from keras_resnet import load_torch_weights
from keras_resnet.models import get_spec

torch = pytest.importorskip("torch")
nn = torch.nn
from benchmarks.torch_resnet import TorchResNet  # noqa: E402  (needs PyTorch)

TOLERANCE = 1e-4


def twin(name: str, num_classes: int = 10, pad: str = "end", **overrides) -> nn.Module:
    """The benchmark's PyTorch ResNet of ``name`` in torchvision's names, BN randomised; ``pad``
    is where its option-A shortcuts add zero channels."""
    model = TorchResNet(get_spec(name, **overrides), num_classes, pad)
    return randomised(model, 64 if overrides.get("stem") == "imagenet" else 32)


def randomised(module: nn.Module, size: int) -> nn.Module:
    """Random BN affine parameters and running statistics taken from shifted random data."""
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0.0, 0.2)
                layer.momentum = 1.0  # the running statistics become this batch's
        module.train()(2.0 * torch.randn(8, 3, size, size) + 0.5)
    return module.eval()


def max_logit_diff(torch_model: nn.Module, keras_model, size: int) -> float:
    x = np.random.default_rng(1).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    return float(np.max(np.abs(got - expected)))


def rename(state_dict, rewrites) -> dict:
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in rewrites:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


# torchvision's names -> the notes' (one ``features`` Sequential per block and for the stem,
# ``shortcut``, ``classifer``) and kuangliu/pytorch-cifar's (``shortcut``, ``linear``).
INDEX = {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 4, "conv3": 6, "bn3": 7}
KUANGLIU = [(r"\.downsample\.", ".shortcut."), (r"^fc\.", "linear.")]
NOTES = [
    (r"^((?:layer\d\.\d\.)?)(conv\d|bn\d)\.", lambda m: f"{m[1]}features.{INDEX[m[2]]}."),
    (r"\.downsample\.", ".shortcut."),
    (r"^fc\.", "classifer."),
]
AKAMASTER = [(r"^fc\.", "linear.")]


@pytest.fixture(scope="module")
def resnet18_torch() -> nn.Module:
    return twin("resnet18")


@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_notes_naming_gives_the_same_logits(name):
    torch_model = twin(name)
    state = rename(torch_model.state_dict(), NOTES)
    assert "layer1.0.features.3.weight" in state and "classifer.weight" in state
    model = keras_resnet.build(name)
    load_torch_weights(model, state)
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE


def test_kuangliu_naming_as_numpy_arrays_loads(resnet18_torch):
    state = {k: v.numpy() for k, v in resnet18_torch.state_dict().items()}
    state = rename(state, KUANGLIU)
    assert "layer2.0.shortcut.1.running_var" in state and "linear.weight" in state
    model = keras_resnet.build("resnet18")
    load_torch_weights(model, state)
    assert max_logit_diff(resnet18_torch, model, 32) < TOLERANCE


def test_torchvision_naming_loads_into_the_imagenet_stem():
    torch_model = twin("resnet18", num_classes=1000, stem="imagenet")
    state = torch_model.state_dict()
    assert "layer2.0.downsample.0.weight" in state and "fc.bias" in state
    model = keras_resnet.build(
        "resnet18", stem="imagenet", input_shape=(64, 64, 3), num_classes=1000
    )
    load_torch_weights(model, state)
    assert max_logit_diff(torch_model, model, 64) < TOLERANCE


def test_input_normalization_and_augmentation_layers_are_skipped(resnet18_torch):
    mean, std = 0.5, 0.25
    model = keras_resnet.build(
        "resnet18",
        input_normalization=((mean,) * 3, (std,) * 3),
        augmentation=keras_resnet.RandomCropFlip(cutout=8, name="augment"),
    )
    load_torch_weights(model, resnet18_torch.state_dict())
    assert int(model.get_layer("augment").step.value) == 0  # untouched
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        expected = resnet18_torch(torch.from_numpy(x)).numpy()
    pixels = 255.0 * (x * std + mean)  # raw 0-255 pixels that normalise back to x
    got = np.asarray(model(pixels.transpose(0, 2, 3, 1), training=False))
    assert np.max(np.abs(got - expected)) < TOLERANCE


def test_errors_name_every_problem_and_leave_the_model_untouched(resnet18_torch):
    state = rename(resnet18_torch.state_dict(), NOTES)
    del state["layer2.0.shortcut.1.running_var"]
    state["layer5.0.features.0.weight"] = torch.zeros(1)
    state["classifer.weight"] = torch.zeros(7, 512)
    model = keras_resnet.build("resnet18")
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError) as error:
        load_torch_weights(model, state)
    message = str(error.value)
    assert "missing" in message and "layer2.0.shortcut.1.running_var" in message
    assert "unexpected" in message and "layer5.0.features.0.weight" in message
    assert "'classifer.weight' has shape (7, 512), expected (10, 512)" in message
    assert all(np.array_equal(b, np.array(w)) for b, w in zip(before, model.weights, strict=True))


def test_a_missing_key_in_the_notes_naming_is_reported_canonically(resnet18_torch):
    state = rename(resnet18_torch.state_dict(), NOTES)
    del state["layer1.0.features.3.weight"]
    with pytest.raises(ValueError, match=r"missing.*layer1\.0\.conv2\.weight"):
        load_torch_weights(keras_resnet.build("resnet18"), state)


def test_a_wrongly_shaped_conv_reports_pytorch_layout(resnet18_torch):
    state = rename(resnet18_torch.state_dict(), NOTES)
    state["features.0.weight"] = torch.zeros(64, 3, 7, 7)
    with pytest.raises(ValueError, match=re.escape("(64, 3, 7, 7), expected (64, 3, 3, 3)")):
        load_torch_weights(keras_resnet.build("resnet18"), state)


def akamaster_state_dict(model: nn.Module) -> dict:
    """Named and saved as akamaster's checkpoints are: ``linear``, and from nn.DataParallel,
    every key under ``module.``."""
    return {f"module.{k}": v for k, v in rename(model.state_dict(), AKAMASTER).items()}


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_akamaster_option_a_resnets_give_the_same_logits(depth):
    torch_model = twin(f"resnet{depth}", pad="both")
    state = akamaster_state_dict(torch_model)
    assert "module.layer2.0.conv1.weight" in state and "module.linear.weight" in state
    assert not any("shortcut" in key for key in state)
    model = keras_resnet.build(f"resnet{depth}")
    report = load_torch_weights(model, state)
    assert len(report.loaded) == len([k for k in state if "num_batches" not in k])
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE


def test_option_a_padded_at_the_end_loads_with_option_a_padding_end():
    torch_model = twin("resnet8")
    model = keras_resnet.build("resnet8")
    load_torch_weights(model, torch_model.state_dict(), option_a_padding="end")
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE
    load_torch_weights(model, torch_model.state_dict())  # read as padded on both sides
    assert max_logit_diff(torch_model, model, 32) > 100 * TOLERANCE
    with pytest.raises(ValueError, match="option_a_padding must be one of both, end, got 'mid'"):
        load_torch_weights(model, torch_model.state_dict(), option_a_padding="mid")


def test_torchvision_naming_of_a_cifar_resnet_gives_the_same_logits(resnet18_torch):
    state = resnet18_torch.state_dict()
    assert "layer2.0.downsample.1.running_var" in state and "fc.weight" in state
    model = keras_resnet.build("resnet18")
    load_torch_weights(model, state)
    assert max_logit_diff(resnet18_torch, model, 32) < TOLERANCE


def test_skip_head_keeps_the_models_head_and_names_the_skipped_keys():
    torch_model = twin("resnet8", 100, pad="both")
    model = keras_resnet.build("resnet8", num_classes=10)
    head = [np.array(w) for w in model.get_layer("predictions").weights]
    report = load_torch_weights(model, akamaster_state_dict(torch_model), skip_head=True)
    assert report.skipped == ("module.linear.weight", "module.linear.bias")
    assert not (report.missing or report.unexpected or report.mismatched)
    assert "skipped (2): module.linear.weight, module.linear.bias" in str(report)
    after = [np.array(w) for w in model.get_layer("predictions").weights]
    assert all(np.array_equal(b, a) for b, a in zip(head, after, strict=True))
    stem = torch_model.conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(np.asarray(model.get_layer("stem_conv").kernel), stem)


def test_strict_false_loads_what_matches_and_reports_the_rest():
    torch_model = twin("resnet8", 7, pad="both")
    state = rename(torch_model.state_dict(), AKAMASTER)
    del state["layer3.0.bn2.running_var"]
    state["layer4.0.conv1.weight"] = torch.zeros(1)
    model = keras_resnet.build("resnet8")
    bn_variance = np.array(model.get_layer("stage3_block0").bn2.moving_variance)
    report = load_torch_weights(model, state, strict=False)
    assert report.missing == ("layer3.0.bn2.running_var",)
    assert report.unexpected == ("layer4.0.conv1.weight",)
    assert report.mismatched == ("linear.bias", "linear.weight")
    assert "layer3.0.bn2.running_mean" in report.loaded and "linear.weight" not in report.loaded
    block = model.get_layer("stage3_block0")
    np.testing.assert_array_equal(np.asarray(block.bn2.moving_variance), bn_variance)
    # Option A pads 16 channels to 32 on both sides: Keras's first 16 are PyTorch's 8-23.
    gamma = torch_model.layer2[0].bn2.weight.detach().numpy()
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("stage2_block0").bn2.gamma)[:16], gamma[8:24]
    )
