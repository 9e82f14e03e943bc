"""load_torch_weights: a PyTorch ResNet and its Keras copy give the same logits."""

import re

import numpy as np
import pytest

import keras_resnet
from keras_resnet import load_torch_weights

torch = pytest.importorskip("torch")
nn = torch.nn

TOLERANCE = 1e-4


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class TorchBasicBlock(nn.Module):
    """The notes' BasicBlock, named as its printout: ``features`` and ``shortcut``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, planes, 3, stride, 1, bias=False),
            bn(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            bn(planes),
        )
        self.shortcut = shortcut(cin, planes * self.expansion, stride)

    def forward(self, x):
        return torch.relu(self.features(x) + self.shortcut(x))


class TorchBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False),
            bn(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            bn(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes * 4, 1, bias=False),
            bn(planes * 4),
        )
        self.shortcut = shortcut(cin, planes * self.expansion, stride)

    def forward(self, x):
        return torch.relu(self.features(x) + self.shortcut(x))


def shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    if stride == 1 and cin == cout:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))


class TorchResNet(nn.Module):
    """The notes' ResNet; ``stem="imagenet"`` swaps in torchvision's 7x7/2 stem and max-pool."""

    def __init__(self, block, depths, num_classes: int = 10, stem: str = "cifar"):
        super().__init__()
        if stem == "cifar":
            self.features = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU())
            self.avg_pool = nn.AvgPool2d(4)
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        cin = 64
        for stage, (depth, planes) in enumerate(
            zip(depths, (64, 128, 256, 512), strict=True), start=1
        ):
            blocks = []
            for index in range(depth):
                blocks.append(block(cin, planes, 2 if stage > 1 and index == 0 else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.classifer = nn.Linear(cin, num_classes)  # sic: the notes' spelling

    def forward(self, x):
        x = self.features(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifer(torch.flatten(self.avg_pool(x), 1))


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


FEATURES = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
KUANGLIU = [
    (r"^((?:layer\d\.\d\.)?)features\.(\d)\.", lambda m: f"{m[1]}{FEATURES[m[2]]}."),
    (r"^classifer\.", "linear."),
]
TORCHVISION = [*KUANGLIU, (r"\.shortcut\.", ".downsample."), (r"^linear\.", "fc.")]


@pytest.fixture(scope="module")
def resnet18_torch() -> nn.Module:
    return randomised(TorchResNet(TorchBasicBlock, (2, 2, 2, 2)), 32)


@pytest.mark.parametrize(
    ("name", "block", "depths"),
    [("resnet18", TorchBasicBlock, (2, 2, 2, 2)), ("resnet50", TorchBottleneck, (3, 4, 6, 3))],
)
def test_notes_model_gives_the_same_logits(name, block, depths):
    torch_model = randomised(TorchResNet(block, depths), 32)
    model = keras_resnet.build(name)
    load_torch_weights(model, torch_model.state_dict())
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE


def test_kuangliu_naming_as_numpy_arrays_loads(resnet18_torch):
    state = {k: v.numpy() for k, v in resnet18_torch.state_dict().items()}
    state = rename(state, KUANGLIU)
    assert "layer2.0.shortcut.1.running_var" in state and "linear.weight" in state
    model = keras_resnet.build("resnet18")
    load_torch_weights(model, state)
    assert max_logit_diff(resnet18_torch, model, 32) < TOLERANCE


def test_torchvision_naming_loads_into_the_imagenet_stem():
    torch_model = randomised(
        TorchResNet(TorchBasicBlock, (2, 2, 2, 2), num_classes=1000, stem="imagenet"), 64
    )
    state = rename(torch_model.state_dict(), TORCHVISION)
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
    state = dict(resnet18_torch.state_dict())
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
    state = dict(resnet18_torch.state_dict())
    del state["layer1.0.features.3.weight"]
    with pytest.raises(ValueError, match=r"missing.*layer1\.0\.conv2\.weight"):
        load_torch_weights(keras_resnet.build("resnet18"), state)


def test_a_wrongly_shaped_conv_reports_pytorch_layout(resnet18_torch):
    state = dict(resnet18_torch.state_dict())
    state["features.0.weight"] = torch.zeros(64, 3, 7, 7)
    with pytest.raises(ValueError, match=re.escape("(64, 3, 7, 7), expected (64, 3, 3, 3)")):
        load_torch_weights(keras_resnet.build("resnet18"), state)


class LambdaLayer(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class AkamasterBlock(nn.Module):
    """akamaster/pytorch_resnet_cifar10's BasicBlock: option A pads the new channels on both
    sides (``planes // 4`` each), or only after the old ones with ``pad="end"``."""

    def __init__(self, cin: int, planes: int, stride: int, pad: str = "both"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = bn(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            sides = (planes // 4, planes // 4) if pad == "both" else (0, planes - cin)
            self.shortcut = LambdaLayer(
                lambda x: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, *sides))
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class AkamasterResNet(nn.Module):
    """The 6n+2 CIFAR nets of akamaster/pytorch_resnet_cifar10: ``conv1``, ``bn1``,
    ``layer1..3``, ``linear``; no shortcut parameters."""

    def __init__(self, n: int, num_classes: int = 10, pad: str = "both"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = bn(16)
        cin = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            blocks = []
            for index in range(n):
                blocks.append(
                    AkamasterBlock(cin, planes, 2 if stage > 1 and index == 0 else 1, pad)
                )
                cin = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class TorchvisionBlock(nn.Module):
    """torchvision's BasicBlock: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = bn(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), bn(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TorchvisionCifarResNet(nn.Module):
    """torchvision's ResNet-18 as CIFAR ports keep it: a 3x3 stride-1 ``conv1``, no max-pool,
    ``avgpool`` and ``fc``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        cin = 64
        for stage, planes in enumerate((64, 128, 256, 512), start=1):
            first = TorchvisionBlock(cin, planes, 1 if stage == 1 else 2)
            setattr(
                self, f"layer{stage}", nn.Sequential(first, TorchvisionBlock(planes, planes, 1))
            )
            cin = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def akamaster_state_dict(model: nn.Module) -> dict:
    """Saved as akamaster's checkpoints are, from nn.DataParallel: every key under ``module.``."""
    return nn.DataParallel(model).state_dict()


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_akamaster_option_a_resnets_give_the_same_logits(depth):
    torch_model = randomised(AkamasterResNet((depth - 2) // 6), 32)
    state = akamaster_state_dict(torch_model)
    assert "module.layer2.0.conv1.weight" in state and "module.linear.weight" in state
    assert not any("shortcut" in key for key in state)
    model = keras_resnet.build(f"resnet{depth}")
    report = load_torch_weights(model, state)
    assert len(report.loaded) == len([k for k in state if "num_batches" not in k])
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE


def test_option_a_padded_at_the_end_loads_with_option_a_padding_end():
    torch_model = randomised(AkamasterResNet(1, pad="end"), 32)
    model = keras_resnet.build("resnet8")
    load_torch_weights(model, torch_model.state_dict(), option_a_padding="end")
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE
    load_torch_weights(model, torch_model.state_dict())  # read as padded on both sides
    assert max_logit_diff(torch_model, model, 32) > 100 * TOLERANCE
    with pytest.raises(ValueError, match="option_a_padding must be one of both, end, got 'mid'"):
        load_torch_weights(model, torch_model.state_dict(), option_a_padding="mid")


def test_torchvision_style_cifar_resnet_gives_the_same_logits():
    torch_model = randomised(TorchvisionCifarResNet(), 32)
    state = torch_model.state_dict()
    assert "layer2.0.downsample.1.running_var" in state and "fc.weight" in state
    model = keras_resnet.build("resnet18")
    load_torch_weights(model, state)
    assert max_logit_diff(torch_model, model, 32) < TOLERANCE


def test_skip_head_keeps_the_models_head_and_names_the_skipped_keys():
    torch_model = randomised(AkamasterResNet(1, num_classes=100), 32)
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
    torch_model = randomised(AkamasterResNet(1, num_classes=7), 32)
    state = dict(torch_model.state_dict())
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
