"""Every registered network in PyTorch, built from the same ``ModelSpec`` as ``keras_resnet.build``
(same parameters, initial weight distributions, BatchNorm eps and momentum: 0.1 is Keras's 0.9):
the throughput benchmark's ``torch`` row, and the tests' PyTorch reference, its state_dict named
as torchvision names it (what ``keras_resnet.load_torch_weights`` reads). Input: normalised NCHW."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin: int, cout: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False)


class Block(nn.Module):
    """One residual unit, ``conv1``/``bn1`` ... (three with ``bottleneck``) and ``downsample``:
    ``pre_activation`` is the 2016 unit (each BN before its conv; a bare projection that reads
    the activated input), else the 2015 one. An option-A shortcut adds its zero channels at the
    ``end`` (keras_resnet's choice) or on ``both`` sides (akamaster/pytorch_resnet_cifar10's)."""

    def __init__(self, cin: int, planes: int, stride: int, shortcut: str, bottleneck: bool,
                 pre_activation: bool, option_a_padding: str = "end"):  # fmt: skip
        super().__init__()
        self.out_channels = planes * (4 if bottleneck else 1)
        if bottleneck:
            shapes = [(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, planes * 4, 1, 1)]
        else:
            shapes = [(cin, planes, 3, stride), (planes, planes, 3, 1)]
        self.layers = []  # (conv, bn) pairs, also attributes by torchvision's names
        for i, (a, b, k, s) in enumerate(shapes, start=1):
            setattr(self, f"conv{i}", conv(a, b, k, s))
            setattr(self, f"bn{i}", nn.BatchNorm2d(a if pre_activation else b))
            self.layers.append((getattr(self, f"conv{i}"), getattr(self, f"bn{i}")))
        self.pre_activation, self.shortcut, self.stride = pre_activation, shortcut, stride
        added = self.out_channels - cin
        self.padding = (0, added) if option_a_padding == "end" else (added // 2, added - added // 2)
        self.downsample = None
        if shortcut == "C" or (shortcut == "B" and (stride != 1 or added)):
            projection = [conv(cin, self.out_channels, 1, stride)]
            if not pre_activation:
                projection.append(nn.BatchNorm2d(self.out_channels))
            self.downsample = nn.Sequential(*projection)

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self.stride != 1:  # option A: subsample, then zero-pad the new channels
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.padding)) if any(self.padding) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_activation:
            a = F.relu(self.layers[0][1](x))
            y = self.layers[0][0](a)
            for cv, bn in self.layers[1:]:
                y = cv(F.relu(bn(y)))
            if self.shortcut == "none":
                return y
            return y + self.identity(a if self.downsample is not None else x)
        y = x
        for i, (cv, bn) in enumerate(self.layers):
            y = bn(cv(y))
            y = F.relu(y) if i < len(self.layers) - 1 else y
        return F.relu(y if self.shortcut == "none" else y + self.identity(x))


class TorchResNet(nn.Module):
    """The network ``keras_resnet.build`` makes from ``spec``, in PyTorch (NCHW, logits out)."""

    def __init__(self, spec, num_classes: int = 10, option_a_padding: str = "end"):
        super().__init__()
        bottleneck = spec.block in ("bottleneck", "preact_bottleneck")
        pre = spec.block.startswith("preact")
        width, imagenet = spec.widths[0], spec.stem != "cifar"
        self.conv1 = conv(3, width, 7, 2) if imagenet else conv(3, width, 3)
        self.bn1 = nn.BatchNorm2d(width) if imagenet or not pre else None
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        cin, self.stages = width, []  # also attributes layer1, layer2, ...
        for stage, (depth, planes) in enumerate(zip(spec.depths, spec.widths, strict=True), 1):
            blocks = []
            for index in range(depth):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(Block(cin, planes, stride, spec.shortcut, bottleneck, pre,
                                    option_a_padding))  # fmt: skip
                cin = blocks[-1].out_channels
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.stages.append(getattr(self, f"layer{stage}"))
        self.final_bn = nn.BatchNorm2d(cin) if pre else None
        self.fc = nn.Linear(cin, num_classes)
        # As keras_resnet.build starts: "torch" keeps PyTorch's defaults; "he" and "torchvision"
        # draw convolutions from kaiming_normal_(mode="fan_out"), and "he" zeroes the
        # classifier's bias. zero_init_residual zeroes the last BN of each branch (the last conv
        # of a pre-activation unit, which has no BN after it).
        if spec.initializer != "torch":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if spec.initializer == "he":
            nn.init.zeros_(self.fc.bias)
        if spec.zero_init_residual:
            for block in (block for stage in self.stages for block in stage):
                cv, bn = block.layers[-1]
                nn.init.zeros_((cv if block.pre_activation else bn).weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool(x if self.bn1 is None else F.relu(self.bn1(x)))
        for stage in self.stages:
            x = stage(x)
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
