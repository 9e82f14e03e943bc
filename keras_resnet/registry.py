"""The model registry: every network is one line of configuration, kept free of Keras.

``keras_resnet.models.build`` builds these specs; the command line lists them, counts their
parameters and checks a ``--model`` without importing Keras, so that it answers at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools

from keras_resnet.checks import is_int


@dataclasses.dataclass(frozen=True)
class BlockKind:
    """What the registry knows of a residual block without building it."""

    expansion: int  # output channels per filter
    pre_activation: bool  # the 2016 unit: BN-ReLU before each convolution
    kernels: tuple[int, ...]  # the residual branch's convolutions, in order


BLOCK_KINDS = {
    "basic": BlockKind(1, False, (3, 3)),
    "bottleneck": BlockKind(4, False, (1, 3, 1)),
    "preact_basic": BlockKind(1, True, (3, 3)),
    "preact_bottleneck": BlockKind(4, True, (1, 3, 1)),
}
SHORTCUTS = ("A", "B", "C", "none")
"""A: identity, subsample and zero-pad channels. B: projection only where the shape changes
(the notes' default). C: projection everywhere. none: no shortcut (a plain net)."""
STEMS = ("cifar", "imagenet")
STEM_KERNELS = {"cifar": 3, "imagenet": 7}

# PyTorch's default for every Conv2d and Linear weight, kaiming_uniform_(a=sqrt(5)): U(-b, b) with
# b = 1/sqrt(fan_in), which is VarianceScaling's uniform limit sqrt(3 * scale / fan_in) at 1/3.
TORCH_DEFAULT_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}
# The 2015 paper's and torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu").
HE_NORMAL_FAN_OUT_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}


@dataclasses.dataclass(frozen=True)
class Initialization:
    """How one source starts its weights; BatchNorm always starts at gamma 1, beta 0."""

    conv: dict
    torch_dense_bias: bool  # PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)), else zeros


# The dense kernel is PyTorch's default in all three; the head's bias and the convolutions differ.
INITIALIZATIONS = {
    # The notes' and kuangliu's nets: PyTorch's defaults, left untouched.
    "torch": Initialization(TORCH_DEFAULT_INITIALIZER, torch_dense_bias=True),
    # The 2015 paper's CIFAR nets: He-normal convolutions (Keras's zero dense bias).
    "he": Initialization(HE_NORMAL_FAN_OUT_INITIALIZER, torch_dense_bias=False),
    # torchvision's ResNet: He-normal fan-out convolutions, nn.Linear left at its default.
    "torchvision": Initialization(HE_NORMAL_FAN_OUT_INITIALIZER, torch_dense_bias=True),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What distinguishes one ResNet from another."""

    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    shortcut: str = "B"
    stem: str = "cifar"
    zero_init_residual: bool = False
    # How the weights start, as the net's source did (a key of INITIALIZATIONS); the "imagenet"
    # stem implies torchvision's unless an initializer is given with it.
    initializer: str = "he"


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, **fields) -> None:
    _REGISTRY[name] = ModelSpec(**fields)


PAPER = (16, 32, 64)  # the 2015 paper's CIFAR nets: 6n+2 layers, option-A shortcuts

# The notes' CIFAR-10 nets (kuangliu/pytorch-cifar layout): 3x3 stem, four stages, no max-pool,
# PyTorch's default initialisation.
register("resnet18", block="basic", depths=(2, 2, 2, 2), initializer="torch")
register("resnet34", block="basic", depths=(3, 4, 6, 3), initializer="torch")
register("resnet50", block="bottleneck", depths=(3, 4, 6, 3), initializer="torch")
register("resnet101", block="bottleneck", depths=(3, 4, 23, 3), initializer="torch")
register("resnet152", block="bottleneck", depths=(3, 8, 36, 3), initializer="torch")
# The 2015 paper, section 4.2 (n = 1, 2 are small extras for quick experiments).
register("resnet8", block="basic", depths=(1, 1, 1), widths=PAPER, shortcut="A")
register("resnet14", block="basic", depths=(2, 2, 2), widths=PAPER, shortcut="A")
register("resnet20", block="basic", depths=(3, 3, 3), widths=PAPER, shortcut="A")
register("resnet32", block="basic", depths=(5, 5, 5), widths=PAPER, shortcut="A")
register("resnet44", block="basic", depths=(7, 7, 7), widths=PAPER, shortcut="A")
register("resnet56", block="basic", depths=(9, 9, 9), widths=PAPER, shortcut="A")
register("resnet110", block="basic", depths=(18, 18, 18), widths=PAPER, shortcut="A")
register("resnet1202", block="basic", depths=(200, 200, 200), widths=PAPER, shortcut="A")
# Plain counterparts for the degradation study: the same stacks without shortcuts.
register("plain18", block="basic", depths=(2, 2, 2, 2), shortcut="none", initializer="torch")
register("plain34", block="basic", depths=(3, 4, 6, 3), shortcut="none", initializer="torch")
register("plain8", block="basic", depths=(1, 1, 1), widths=PAPER, shortcut="none")
register("plain14", block="basic", depths=(2, 2, 2), widths=PAPER, shortcut="none")
register("plain20", block="basic", depths=(3, 3, 3), widths=PAPER, shortcut="none")
register("plain32", block="basic", depths=(5, 5, 5), widths=PAPER, shortcut="none")
register("plain44", block="basic", depths=(7, 7, 7), widths=PAPER, shortcut="none")
register("plain56", block="basic", depths=(9, 9, 9), widths=PAPER, shortcut="none")
register("plain110", block="basic", depths=(18, 18, 18), widths=PAPER, shortcut="none")
# The 2016 paper's pre-activation units (the 18 and 34 in kuangliu's layout).
register("preact_resnet18", block="preact_basic", depths=(2, 2, 2, 2), initializer="torch")
register("preact_resnet34", block="preact_basic", depths=(3, 4, 6, 3), initializer="torch")
register("preact_resnet110", block="preact_basic", depths=(18, 18, 18), widths=PAPER)
register("preact_resnet164", block="preact_bottleneck", depths=(18, 18, 18), widths=PAPER)
register("preact_resnet1001", block="preact_bottleneck", depths=(111, 111, 111), widths=PAPER)


def list_models() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def _closest(name: str) -> str | None:
    """The registered name most like ``name``; among equally similar ones, the one with the
    most characters in the same places (``resnet2O`` is ``resnet20``, not ``resnet32``)."""
    close = difflib.get_close_matches(name, _REGISTRY, n=len(_REGISTRY))
    if not close:
        return None

    def similarity(candidate: str) -> tuple[float, int]:
        ratio = difflib.SequenceMatcher(None, name, candidate).ratio()
        return ratio, sum(a == b for a, b in zip(name, candidate, strict=False))

    return max(close, key=similarity)


def get_spec(name: str, **overrides) -> ModelSpec:
    """The registered spec for ``name`` with ``overrides`` applied and validated."""
    if not isinstance(name, str) or name not in _REGISTRY:
        close = _closest(str(name))
        hint = f" Did you mean {close!r}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}")
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {', '.join(map(repr, unknown))} for build({name!r}); "
            f"valid overrides: {', '.join(sorted(fields))}"
        )
    spec = dataclasses.replace(_REGISTRY[name], **overrides)
    check_choice("block", spec.block, tuple(BLOCK_KINDS))
    check_choice("shortcut", spec.shortcut, SHORTCUTS)
    check_choice("stem", spec.stem, STEMS)
    check_choice("initializer", spec.initializer, tuple(INITIALIZATIONS))
    if spec.stem == "imagenet" and "initializer" not in overrides:
        spec = dataclasses.replace(spec, initializer="torchvision")  # the stem's source
    if not (
        _is_int_sequence(spec.depths)
        and _is_int_sequence(spec.widths)
        and len(spec.depths) == len(spec.widths)
    ):
        raise ValueError(
            f"depths and widths must be equally long, non-empty sequences of positive ints, "
            f"got depths={spec.depths!r}, widths={spec.widths!r}"
        )
    if not isinstance(spec.zero_init_residual, bool):
        raise ValueError(
            f"zero_init_residual must be True or False, got {spec.zero_init_residual!r}"
        )
    # Tuples whatever sequence was given, so specs compare and hash alike.
    return dataclasses.replace(spec, depths=tuple(spec.depths), widths=tuple(spec.widths))


def check_choice(kind: str, value, valid: tuple) -> None:
    """Refuse ``value`` unless it is one of ``valid``; the type check keeps ``in`` from raising
    TypeError (an unhashable key) or an ambiguous-truth error (an array)."""
    if not (value is None or isinstance(value, str)) or value not in valid:
        shown = ", ".join("None" if v is None else str(v) for v in valid)
        raise ValueError(f"Unknown {kind} {value!r}; valid: {shown}")


def _is_int_sequence(values) -> bool:
    """A non-empty list or tuple of positive ints (bools, floats and strings are not counts)."""
    return (
        isinstance(values, (list, tuple))
        and len(values) > 0
        and all(is_int(v) and v > 0 for v in values)
    )


def layer_depth(spec: ModelSpec) -> int:
    """Weighted layers, as the papers count them: the stem, every block's convolutions, the head."""
    return 2 + sum(spec.depths) * len(BLOCK_KINDS[spec.block].kernels)


def downsampling(spec: ModelSpec) -> int:
    """How many input pixels one output pixel spans along each side."""
    return 2 ** (len(spec.depths) - 1) * (4 if spec.stem == "imagenet" else 1)


def parameter_count(name: str, num_classes: int = 10, channels: int = 3, **overrides) -> int:
    """Trainable parameters of ``build(name, num_classes=num_classes, **overrides)`` on
    ``channels``-channel images, counted from the spec without building anything (the listing
    shows them all at once; a test checks every registered name against Keras's count).

    A BatchNormalization trains its gamma and beta, 2 per channel; convolutions have no bias.
    """
    spec = get_spec(name, **overrides)
    kind = BLOCK_KINDS[spec.block]
    width = spec.widths[0]
    total = STEM_KERNELS[spec.stem] ** 2 * channels * width
    if not (kind.pre_activation and spec.stem == "cifar"):  # the pre-activation CIFAR stem is bare
        total += 2 * width
    for stage, (depth, filters) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        out = filters * kind.expansion
        for index in range(depth):
            sides = [width] + [filters] * (len(kind.kernels) - 1) + [out]
            for kernel, (into, onto) in zip(kind.kernels, itertools.pairwise(sides), strict=True):
                total += kernel**2 * into * onto + 2 * (into if kind.pre_activation else onto)
            reshapes = (stage > 0 and index == 0) or width != out
            if spec.shortcut == "C" or (spec.shortcut == "B" and reshapes):
                total += width * out + (0 if kind.pre_activation else 2 * out)
            width = out
    if kind.pre_activation:
        total += 2 * width  # the final BN before pooling
    return total + (width + 1) * num_classes
