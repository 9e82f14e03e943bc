"""What a training run is: ``TrainConfig``, the named recipes it starts from, and their checks.

A config is checked once, when it is made: everything downstream trusts it. Fields left out
take the recipe's value, then the notes' (``TrainConfig(recipe="paper", model="resnet110")``
is the paper's ResNet-110 run), so the command line, ``config.json`` and Python all mean the
same thing by a recipe. Errors name the field (``ConfigError.parameter``); the command line
shows it as a flag.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from keras_resnet import pretrained
from keras_resnet.arguments import check_crop_flip
from keras_resnet.errors import ConfigError
from keras_resnet.registry import downsampling, get_spec, layer_depth
from keras_resnet.saving import parse_pretrained
from keras_resnet.torch_reader import SUFFIXES as TORCH_SUFFIXES
from keras_resnet.trainer.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, PAD
from keras_resnet.trainer.data.common import FOLDER

PRECISIONS = ("float32", "mixed_bfloat16")
LOG_FORMATS = ("keras", "note")
# plateau: Keras's ReduceLROnPlateau on the validation accuracy; torch_plateau: PyTorch's rule on
# the epoch's summed training loss (the notes'); steps and triangular: per-step, fixed in
# advance; cosine: PyTorch's CosineAnnealingLR over the run, stepped once an epoch.
SCHEDULES = ("plateau", "torch_plateau", "steps", "triangular", "cosine")
WARMUP_SCHEDULES = ("steps", "triangular")
# (mean, std) per channel on the 0-1 scale, by name: kuangliu/pytorch-cifar's CIFAR-10
# statistics, the notes' Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), and ImageNet's, which the
# published CIFAR-10 weights were trained with (fine-tuning them: --init-from resnet20:cifar10).
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": pretrained.WEIGHTS["cifar10"].normalization,
}
# "data": the training split's own per-channel mean and std, measured when the run starts. A
# recipe's "cifar10" means "the data's statistics" measured on CIFAR-10, so on any other
# dataset it becomes "data" unless given explicitly; the notes' fixed 0.5/0.5 stays as it is.
DATA_NORMALIZATION = "data"
NORMALIZATION_NAMES = (*NORMALIZATIONS, DATA_NORMALIZATION)
# Fields that may change when a run is continued: where things are, how verbose, how long.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "output_dir", "data_dir", "log_format", "tensorboard", "max_memory_gb"}
)
# What --init-from starts from: a .keras model of this project, or a PyTorch checkpoint.
INIT_SUFFIXES = (".keras", *TORCH_SUFFIXES)  # what --init-from reads, besides NAME:WEIGHTS
# Iteration counts go to the optimizer as int32.
MAX_STEPS = 2**31 - 1

RECIPES: dict[str, dict[str, Any]] = {
    # The notes' run (SPEC.md section 4): TrainConfig's defaults, the NOTES dict below.
    "note": {},
    # He et al. 2015, section 4.2: batch 128, weight decay 1e-4, lr 0.1 divided by 10 at 32k and
    # 48k iterations, stop at 64k (182 epochs of 352 steps on the 45k/5k split), and a 0.01
    # warm-up for the first 400 iterations of ResNet-110 and deeper.
    "paper": {
        "model": "resnet18",
        "epochs": 182,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "steps",
        "lr_milestones": (32_000, 48_000),
        "val_size": 5000,
        "warmup_lr": 0.01,
        "warmup_steps": 400,
        "padding": PAD,
        "normalization": "cifar10",
        "log_format": "keras",
    },
    # A tuned ResNet-18 recipe (94% in 26 epochs with PyTorch on one A100): batch 512, Nesterov
    # momentum, a triangular learning rate (linear warm-up over 5 epochs of 98 steps, then
    # linear decay to zero), flip + translate-4 + cutout-12, label smoothing, bfloat16 with
    # BatchNorm and the loss in float32, and flip test-time augmentation.
    "fast": {
        "model": "resnet18",
        "epochs": 26,
        "batch_size": 512,
        "lr": 0.2,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "schedule": "triangular",
        "warmup_steps": 490,
        "label_smoothing": 0.2,
        "cutout": 12,
        "precision": "mixed_bfloat16",
        "flip_tta": True,
        "padding": PAD,
        "normalization": "cifar10",
        "log_format": "keras",
    },
    # kuangliu/pytorch-cifar's main.py (SPEC.md section 5): ResNet-18, crop + flip, its
    # mean/std, SGD 0.1/0.9/5e-4, CosineAnnealingLR(T_max=200) stepped once an epoch.
    "kuangliu": {
        "model": "resnet18",
        "epochs": 200,
        "schedule": "cosine",
        "padding": PAD,
        "normalization": "cifar10",
        "log_format": "keras",
    },
}
# The paper warms up only its deepest nets (ResNet-110 and deeper).
WARMUP_FROM_DEPTH = {"paper": 110}


class _FromRecipe:
    """The default of every field: take the recipe's value, else the notes'."""

    def __repr__(self) -> str:
        return "<from recipe>"


FROM_RECIPE: Any = _FromRecipe()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run. The values after ``#`` are the notes' (SPEC.md section 4).

    ``torch_plateau`` is PyTorch's ``ReduceLROnPlateau(threshold=lr_threshold,
    patience=lr_patience, factor=lr_factor, min_lr=min_lr)`` stepped with the epoch's sum of
    batch-mean training losses; ``plateau`` is Keras's, on the validation accuracy, and needs
    ``val_size``. The test set only reports: it never cuts a rate or picks a model.
    """

    recipe: str = "note"
    model: str = FROM_RECIPE  # resnet34
    epochs: int = FROM_RECIPE  # 50
    batch_size: int = FROM_RECIPE  # 128
    lr: float = FROM_RECIPE  # 0.1
    momentum: float = FROM_RECIPE  # 0.9
    nesterov: bool = FROM_RECIPE  # False
    weight_decay: float = FROM_RECIPE  # 5e-4
    schedule: str = FROM_RECIPE  # torch_plateau
    lr_patience: int = FROM_RECIPE  # 3
    lr_factor: float = FROM_RECIPE  # 0.1
    lr_threshold: float = FROM_RECIPE  # 0.1
    min_lr: float = FROM_RECIPE  # 0
    lr_milestones: tuple[int, ...] = FROM_RECIPE  # ()
    warmup_lr: float = FROM_RECIPE  # 0
    warmup_steps: int = FROM_RECIPE  # 0
    label_smoothing: float = FROM_RECIPE  # 0
    cutout: int = FROM_RECIPE  # 0
    padding: int = FROM_RECIPE  # 0: flips only
    normalization: str = FROM_RECIPE  # half
    flip_tta: bool = FROM_RECIPE  # False
    seed: int = FROM_RECIPE  # 0
    data_dir: str | None = FROM_RECIPE  # tfds's default
    synthetic: bool = FROM_RECIPE  # False
    train_size: int | None = FROM_RECIPE  # all
    val_size: int = FROM_RECIPE  # 0
    precision: str = FROM_RECIPE  # float32
    log_format: str = FROM_RECIPE  # note
    output_dir: str | None = FROM_RECIPE  # runs/<model>
    tensorboard: bool = FROM_RECIPE  # False: no TensorBoard logs
    dataset: str = FROM_RECIPE  # cifar10: a tfds name, or folder:PATH
    image_size: tuple[int, int] | None = FROM_RECIPE  # None: the images' own size
    max_memory_gb: float = FROM_RECIPE  # 4: a bigger folder is streamed, not held in memory
    init_from: str | None = FROM_RECIPE  # None: a fresh initialisation
    freeze_backbone: bool = FROM_RECIPE  # False: every layer trains

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, str) or self.recipe not in RECIPES:
            raise ConfigError("recipe", f"must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        preset = RECIPES[self.recipe]
        unset = {f.name for f in dataclasses.fields(self) if getattr(self, f.name) is FROM_RECIPE}
        for name in unset:
            object.__setattr__(self, name, preset.get(name, NOTES[name]))
        if isinstance(self.lr_milestones, list):
            object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        object.__setattr__(self, "image_size", _square(self.image_size))
        if (
            "normalization" in unset
            and self.normalization == "cifar10"
            and self.dataset != NOTES["dataset"]
        ):
            object.__setattr__(self, "normalization", DATA_NORMALIZATION)
        deep_enough = WARMUP_FROM_DEPTH.get(self.recipe, 0)
        if deep_enough and "warmup_steps" in unset:
            try:
                shallow = layer_depth(get_spec(self.model)) < deep_enough
            except ValueError:
                shallow = False  # an unknown model: _check names it
            if shallow:
                object.__setattr__(self, "warmup_steps", 0)
        _check(self)

    @property
    def run_dir(self) -> Path:
        """``output_dir``, or ``runs/<model>[-<dataset>]`` so that re-running a command resumes
        it."""
        if self.output_dir:
            return Path(self.output_dir)
        suffix = "-synthetic" if self.synthetic else ""
        if self.dataset != NOTES["dataset"]:
            suffix = "-" + Path(self.dataset.removeprefix(FOLDER)).name
        return Path("runs") / (self.model + suffix)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {
            "lr_milestones": list(self.lr_milestones),
            "image_size": list(self.image_size) if self.image_size else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        """A config as ``to_json`` wrote it; every field must be there."""
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data))
        if missing:  # a run begun by an earlier version, which had fewer settings
            raise ConfigError(
                missing[0], "is missing (an earlier version of keras_resnet wrote this file?)"
            )
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(unknown[0], "is not a setting of this version")
        milestones = data["lr_milestones"]
        if not isinstance(milestones, list | tuple):
            raise ConfigError("lr_milestones", f"must be a list, got {milestones!r}")
        return cls(**{**data, "lr_milestones": tuple(milestones)})

    def changed_settings(self, other: TrainConfig) -> dict[str, tuple]:
        """``{field: (ours, theirs)}`` for the fields that differ and may not change on resume."""
        ours, theirs = self.to_json(), other.to_json()
        return {
            name: (ours[name], theirs[name])
            for name in ours
            if name not in RESUMABLE_CHANGES and ours[name] != theirs[name]
        }


NOTES: dict[str, Any] = {
    "model": "resnet34",  # the printed net; the notes' checkpoint is misnamed res18.ckpt
    "epochs": 50,
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    # ReduceLROnPlateau(optimizer, threshold=0.1, patience=3): stepped with the notes' 50
    # "Total loss" values it cuts after epochs 20, 44 and 50, where their log does.
    "schedule": "torch_plateau",
    "lr_patience": 3,
    "lr_factor": 0.1,
    "lr_threshold": 0.1,
    "min_lr": 0.0,
    "lr_milestones": (),
    "warmup_lr": 0.0,
    "warmup_steps": 0,
    "label_smoothing": 0.0,
    "cutout": 0,
    "padding": 0,  # RandomHorizontalFlip() only: no crop
    "normalization": "half",
    "flip_tta": False,
    "seed": 0,
    "data_dir": None,
    "synthetic": False,
    "train_size": None,
    "val_size": 0,
    "precision": "float32",
    "log_format": "note",
    "output_dir": None,
    "tensorboard": False,
    "dataset": "cifar10",
    "image_size": None,
    "max_memory_gb": 4.0,
    "init_from": None,
    "freeze_backbone": False,
}


def resolve(recipe: str = "note", **settings) -> TrainConfig:
    """The configuration of ``recipe`` with ``settings`` (explicitly given values) on top."""
    return TrainConfig(recipe=recipe, **settings)


def _square(size):
    """``image_size`` as (height, width): one number means a square; lists become tuples."""
    if _is_int(size):
        return (size, size)
    if isinstance(size, list | tuple):
        return tuple(size) * 2 if len(size) == 1 else tuple(size)
    return size


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# Rates and decays reach the optimizer as float32: a smaller one would silently become 0.
FLOAT32_RANGE = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))


def _is_rate(value, positive: bool = True) -> bool:
    """A number float32 holds as it is: 0 (unless ``positive``) or from its smallest normal
    value to its largest."""
    if not _is_number(value) or value < 0:
        return False
    return (value == 0 and not positive) or FLOAT32_RANGE[0] <= value <= FLOAT32_RANGE[1]


def _rate_reason(value, positive: bool = True) -> str:
    lowest = "a positive number" if positive else "0 or a number"
    low, high = FLOAT32_RANGE
    return f"must be {lowest} from {low:.3g} to {high:.3g} (float32), got {value!r}"


def _require(condition: bool, parameter: str, reason: str) -> None:
    if not condition:
        raise ConfigError(parameter, reason)


def _check(c: TrainConfig) -> None:
    """Refuse bad values before any work starts, naming the field and the value."""
    try:
        get_spec(c.model)
    except ValueError as error:
        raise ConfigError.from_value_error("model", error) from None
    for name in ("epochs", "batch_size", "lr_patience"):
        value = getattr(c, name)
        _require(_is_int(value) and value >= 1, name, f"must be a positive integer, got {value!r}")
    for name in ("nesterov", "flip_tta", "synthetic"):
        value = getattr(c, name)
        _require(isinstance(value, bool), name, f"must be True or False, got {value!r}")
    _require(_is_rate(c.lr), "lr", _rate_reason(c.lr))
    _require(
        _is_number(c.momentum) and 0 <= c.momentum < 1,
        "momentum",
        f"must be in [0, 1), got {c.momentum!r}",
    )
    for name in ("weight_decay", "min_lr", "warmup_lr"):
        value = getattr(c, name)
        _require(_is_rate(value, positive=False), name, _rate_reason(value, positive=False))
    _require(
        c.min_lr < c.lr, "min_lr", f"must be below lr ({c.lr!r}), got {c.min_lr!r}"
    )
    _require(
        _is_number(c.lr_factor) and 0 < c.lr_factor < 1,
        "lr_factor",
        f"must be between 0 and 1, got {c.lr_factor!r}",
    )
    _require(
        c.schedule in SCHEDULES,
        "schedule",
        f"must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}",
    )
    milestones = list(c.lr_milestones)
    _require(
        all(_is_int(m) and 1 <= m <= MAX_STEPS for m in milestones)
        and milestones == sorted(set(milestones)),
        "lr_milestones",
        f"must be increasing step numbers from 1 to {MAX_STEPS}, got {milestones}",
    )
    _require(
        _is_int(c.warmup_steps) and 0 <= c.warmup_steps <= MAX_STEPS,
        "warmup_steps",
        f"must be a step count from 0 to {MAX_STEPS}, got {c.warmup_steps!r}",
    )
    # The steps schedule holds warmup_lr during the warm-up; triangular ramps from it, so 0 is
    # a fine start there.
    _require(
        not (c.warmup_steps and c.schedule == "steps" and not c.warmup_lr > 0),
        "warmup_lr",
        f"must be positive for a warm-up of the steps schedule, got {c.warmup_lr!r}",
    )
    _require(
        not c.warmup_steps or c.schedule in WARMUP_SCHEDULES,
        "warmup_steps",
        f"needs the steps or triangular schedule ({c.schedule} has no warm-up)",
    )
    _require(
        _is_number(c.lr_threshold) and c.lr_threshold >= 0,
        "lr_threshold",
        f"must be a non-negative number, got {c.lr_threshold!r}",
    )
    # Without a validation split the Keras plateau rule would watch the test set.
    _require(
        c.schedule != "plateau" or (_is_int(c.val_size) and c.val_size > 0),
        "schedule",
        "plateau follows the validation accuracy and needs a validation split (val_size); "
        "torch_plateau follows the training loss",
    )
    _require(
        _is_number(c.label_smoothing) and 0 <= c.label_smoothing < 1,
        "label_smoothing",
        f"must be in [0, 1), got {c.label_smoothing!r}",
    )
    try:  # the augmentation layer's bounds of its sizes and seed
        check_crop_flip(c.padding, c.cutout, c.seed)
    except ValueError as error:
        parameter = str(error).split(" ", 1)[0]  # "padding must be ...", "seed ...", "cutout ..."
        raise ConfigError.from_value_error(parameter, error) from None
    _require(
        c.normalization in NORMALIZATION_NAMES,
        "normalization",
        f"must be one of {', '.join(NORMALIZATION_NAMES)}, got {c.normalization!r}",
    )
    _check_dataset(c)
    _require(
        c.train_size is None or (_is_int(c.train_size) and c.train_size >= 1),
        "train_size",
        f"must be a positive integer, got {c.train_size!r}",
    )
    _require(
        _is_int(c.val_size) and c.val_size >= 0,
        "val_size",
        f"must be 0 or more, got {c.val_size!r}",
    )
    _require(
        c.precision in PRECISIONS,
        "precision",
        f"must be one of {', '.join(PRECISIONS)}, got {c.precision!r}",
    )
    _require(
        c.log_format in LOG_FORMATS,
        "log_format",
        f"must be one of {', '.join(LOG_FORMATS)}, got {c.log_format!r}",
    )
    for name in ("data_dir", "output_dir"):
        value = getattr(c, name)
        _require(
            value is None or (isinstance(value, str) and value != ""),
            name,
            f"must be a non-empty path, got {value!r}",
        )
    _require(
        isinstance(c.tensorboard, bool),
        "tensorboard",
        f"must be True or False, got {c.tensorboard!r}",
    )
    _require(
        c.init_from is None
        or (
            isinstance(c.init_from, str)
            and (Path(c.init_from).suffix in INIT_SUFFIXES or parse_pretrained(c.init_from))
        ),
        "init_from",
        f"must be a .keras model, a PyTorch {'/'.join(TORCH_SUFFIXES)} checkpoint or "
        f"NAME:WEIGHTS for published weights (resnet20:cifar10), got {c.init_from!r}",
    )
    if source := c.init_from and parse_pretrained(c.init_from):
        try:
            pretrained.published(*source)
        except ConfigError as error:
            raise ConfigError("init_from", f"{c.init_from!r}: {error.reason}") from None
    _require(
        isinstance(c.freeze_backbone, bool),
        "freeze_backbone",
        f"must be True or False, got {c.freeze_backbone!r}",
    )
    # A frozen backbone that was never trained gives the head random features to learn from.
    _require(
        not c.freeze_backbone or c.init_from is not None,
        "freeze_backbone",
        "needs init_from: the backbone it freezes must come from trained weights",
    )


def _check_dataset(c: TrainConfig) -> None:
    _require(
        isinstance(c.dataset, str) and c.dataset not in ("", FOLDER),
        "dataset",
        f"must be a tfds dataset name or {FOLDER}PATH, got {c.dataset!r}",
    )
    _require(
        not c.synthetic or c.dataset == NOTES["dataset"],
        "synthetic",
        f"generates CIFAR-10-like data; it cannot stand in for --dataset {c.dataset}",
    )
    size = c.image_size
    smallest = downsampling(get_spec(c.model))
    _require(
        size is None
        or (isinstance(size, tuple) and len(size) == 2 and all(_is_int(s) for s in size)),
        "image_size",
        f"must be one size or a height and a width in pixels, got {size!r}",
    )
    _require(
        size is None or min(size) >= smallest,
        "image_size",
        f"must be at least {smallest} pixels a side for {c.model}, got {size!r}",
    )
    _require(
        not (size and c.synthetic),
        "image_size",
        "does not apply to --synthetic data, which is 32x32",
    )
    _require(
        _is_number(c.max_memory_gb) and c.max_memory_gb > 0,
        "max_memory_gb",
        f"must be a positive number, got {c.max_memory_gb!r}",
    )
