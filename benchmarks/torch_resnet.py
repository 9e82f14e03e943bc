"""Every registered network as a PyTorch module, for side-by-side speed measurements.

The benchmark's own copy of the notes' PyTorch ResNet (SPEC.md section 2, kuangliu/pytorch-cifar
style), generalised to every ``keras_resnet.ModelSpec``: BasicBlock / Bottleneck, their
pre-activation forms, shortcuts A/B/C/none and both stems. It is built from the same spec as
``keras_resnet.build``, has the same trainable parameter count
(``keras_resnet.models.parameter_count``) and starts its weights from the same distributions
(``spec.initializer``, ``spec.zero_init_residual``), so the two frameworks train the same
network. Weights are not copied: only speed is compared.

Input is NCHW (use ``channels_last`` memory format for speed), already normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # PyTorch's 0.1 is Keras's 0.9


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def conv(cin: int, cout: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free convolution with PyTorch's symmetric ``padding=k//2``."""
    return nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False)


class Block(nn.Module):
    """One residual unit.

    ``bottleneck``: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4; else two 3x3 convs.
    ``pre_activation``: the 2016 unit (BN-ReLU before each conv, bare projection shortcut that
    reads the activated input); else the 2015 unit (conv-BN, ReLU after the sum).
    """

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int,
        shortcut: str,
        bottleneck: bool,
        pre_activation: bool,
    ):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            shapes = [(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, cout, 1, 1)]
        else:
            shapes = [(cin, planes, 3, stride), (planes, planes, 3, 1)]
        self.convs = nn.ModuleList(conv(a, b, k, s) for a, b, k, s in shapes)
        self.bns = nn.ModuleList(batch_norm(a if pre_activation else b) for a, b, _, _ in shapes)
        self.pre_activation = pre_activation
        self.shortcut = shortcut
        self.stride = stride
        self.extra_channels = cout - cin
        self.projects = shortcut == "C" or (shortcut == "B" and (stride != 1 or cin != cout))
        if self.projects:
            self.shortcut_conv = conv(cin, cout, 1, stride)
            self.shortcut_bn = None if pre_activation else batch_norm(cout)

    def _shortcut_path(self, x):
        if self.projects:
            y = self.shortcut_conv(x)
            return y if self.shortcut_bn is None else self.shortcut_bn(y)
        if self.stride != 1:  # option A: subsample, then zero-pad the new channels
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x):
        if self.pre_activation:
            a = F.relu(self.bns[0](x))
            y = self.convs[0](a)
            for bn, cv in zip(self.bns[1:], self.convs[1:], strict=True):
                y = cv(F.relu(bn(y)))
            if self.shortcut == "none":
                return y
            return y + self._shortcut_path(a if self.projects else x)
        y = x
        last = len(self.convs) - 1
        for index, (cv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            y = bn(cv(y))
            if index < last:
                y = F.relu(y)
        if self.shortcut != "none":
            y = y + self._shortcut_path(x)
        return F.relu(y)


class TorchResNet(nn.Module):
    """The network ``keras_resnet.build`` makes from ``spec``, in PyTorch (NCHW, logits out)."""

    def __init__(self, spec, num_classes: int = 10):
        super().__init__()
        bottleneck = spec.block in ("bottleneck", "preact_bottleneck")
        pre = spec.block.startswith("preact")
        width = spec.widths[0]
        if spec.stem == "cifar":
            stem = [conv(3, width, 3)]
            if not pre:
                stem += [batch_norm(width), nn.ReLU()]
        else:
            stem = [conv(3, width, 7, 2), batch_norm(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        self.stem = nn.Sequential(*stem)
        blocks, cin = [], width
        for stage, (depth, planes) in enumerate(zip(spec.depths, spec.widths, strict=True)):
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(Block(cin, planes, stride, spec.shortcut, bottleneck, pre))
                cin = planes * (4 if bottleneck else 1)
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(batch_norm(cin), nn.ReLU()) if pre else nn.Identity()
        self.classifier = nn.Linear(cin, num_classes)
        self._initialise(spec)

    @torch.no_grad()
    def _initialise(self, spec) -> None:
        """Start as ``keras_resnet.build`` does. ``"torch"`` (the notes' nets) keeps PyTorch's
        defaults; ``"he"`` (the 2015 paper's) and ``"torchvision"`` draw every convolution from
        ``kaiming_normal_(mode="fan_out")``, and ``"he"`` starts the classifier's bias at zero.
        ``zero_init_residual`` zeroes the last BN of each residual branch (the last convolution
        in a pre-activation unit, which has no BN after it)."""
        if spec.initializer != "torch":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if spec.initializer == "he":
            nn.init.zeros_(self.classifier.bias)
        if spec.zero_init_residual:
            for block in self.blocks:
                last = block.convs[-1] if block.pre_activation else block.bns[-1]
                nn.init.zeros_(last.weight)

    def forward(self, x):
        x = self.final(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
