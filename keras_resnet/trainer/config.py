"""What a training run is: ``TrainConfig``, each setting declared once, as one of its fields.

A field holds the setting's type, the notes' value, its help and its check; the recipes'
defaults, the command line's flags (``keras_resnet.cli``) and the validation come from it. A
config is checked once, when it is made, and trusted downstream. Fields left out take the
recipe's value, then the notes' (``TrainConfig(recipe="paper", model="resnet110")`` is the
paper's ResNet-110 run). Errors name the field; the command line shows it as a flag.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from keras_resnet import checks
from keras_resnet.checks import Check
from keras_resnet.errors import ConfigError
from keras_resnet.registry import downsampling, get_spec, layer_depth
from keras_resnet.saving import init_source_reason
from keras_resnet.torch_reader import SUFFIXES as TORCH_SUFFIXES
from keras_resnet.trainer.data.common import FOLDER
from keras_resnet.trainer.data.normalization import DATA_NORMALIZATION, NORMALIZATION_NAMES
from keras_resnet.trainer.recipes import RECIPES, WARMUP_FROM_DEPTH

PRECISIONS = ("float32", "mixed_bfloat16")
LOG_FORMATS = ("keras", "note")
# plateau: Keras's ReduceLROnPlateau on the validation accuracy; torch_plateau: PyTorch's rule on
# the epoch's summed training loss (the notes'); steps and triangular: per-step, fixed in
# advance; cosine: PyTorch's CosineAnnealingLR over the run, stepped once an epoch.
SCHEDULES = ("plateau", "torch_plateau", "steps", "triangular", "cosine")
WARMUP_SCHEDULES = ("steps", "triangular")


class _FromRecipe:
    """The default of every field: take the recipe's value, else the notes'."""

    def __repr__(self) -> str:
        return "<from recipe>"


FROM_RECIPE: Any = _FromRecipe()


def setting(
    notes: Any,
    help: str,
    check: Check | None = None,
    *,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
    metavar: str | None = None,
    resumable: bool = False,
    recipe_default: bool = True,
) -> Any:
    """A ``TrainConfig`` field, declared once. ``notes``: the notes' value, which a recipe keeps
    unless it sets its own; ``help``: the flag's text (``{choices}`` lists them); ``check``: its
    rule (``keras_resnet.checks``; ``choices`` make one); ``shown``: how the help names the
    default, where the value itself would not say it; ``resumable``: a continued run may change
    it (where things are, how verbose, how long)."""
    help = help.format(choices=", ".join(choices))
    check = check or checks.one_of(choices)
    metadata = dict(notes=notes, help=help, check=check, shown=shown, metavar=metavar)
    metadata["resumable"] = resumable
    return dataclasses.field(default=FROM_RECIPE if recipe_default else notes, metadata=metadata)


def _model_reason(name) -> str | None:
    try:
        get_spec(name)
    except ValueError as error:
        return ConfigError.from_value_error("model", error).reason
    return None


_MILESTONES = checks.rule(
    lambda v: (
        isinstance(v, tuple)
        and all(checks.is_int(m) and 1 <= m <= checks.MAX_STEPS for m in v)
        and list(v) == sorted(set(v))
    ),
    f"increasing step numbers from 1 to {checks.MAX_STEPS}",
)
_IMAGE_SIZE = checks.rule(
    lambda v: isinstance(v, tuple) and len(v) == 2 and all(checks.is_int(s) for s in v),
    "one size or a height and a width in pixels",
    optional=True,
)
_DATASET = checks.rule(
    lambda v: isinstance(v, str) and v not in ("", FOLDER), f"a tfds dataset name or {FOLDER}PATH"
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; each field's first value is the notes'.

    ``torch_plateau`` is PyTorch's ``ReduceLROnPlateau(threshold=lr_threshold,
    patience=lr_patience, factor=lr_factor, min_lr=min_lr)`` stepped with the epoch's sum of
    batch-mean training losses; ``plateau`` is Keras's, on the validation accuracy, and needs
    ``val_size``. The test set only reports: it never cuts a rate or picks a model.
    """

    recipe: str = setting(
        "note", "preset: {choices}; flags override it", choices=tuple(RECIPES),
        recipe_default=False,
    )  # fmt: skip
    # The notes print ResNet-34 (their checkpoint is misnamed res18.ckpt).
    model: str = setting(
        "resnet34", "a registered name, see `python -m keras_resnet list`", _model_reason
    )
    epochs: int = setting(50, "training epochs", checks.POSITIVE_INT, resumable=True)
    batch_size: int = setting(128, "images per step", checks.POSITIVE_INT)
    lr: float = setting(0.1, "initial learning rate", checks.rate())
    momentum: float = setting(0.9, "SGD momentum", checks.FRACTION)
    nesterov: bool = setting(False, "Nesterov momentum", checks.BOOLEAN)
    weight_decay: float = setting(5e-4, "L2 in PyTorch's sense", checks.rate(positive=False))
    # The notes' ReduceLROnPlateau(optimizer, threshold=0.1, patience=3): stepped with their 50
    # "Total loss" values it cuts after epochs 20, 44 and 50, where their log does.
    schedule: str = setting("torch_plateau", "{choices}", choices=SCHEDULES)
    lr_patience: int = setting(3, "plateaus: stalled epochs before a cut", checks.POSITIVE_INT)
    lr_factor: float = setting(
        0.1,
        "learning-rate cut",
        checks.rule(lambda v: checks.is_number(v) and 0 < v < 1, "between 0 and 1"),
    )
    lr_threshold: float = setting(0.1, "torch_plateau: relative gain", checks.NON_NEGATIVE)
    min_lr: float = setting(0.0, "plateaus' floor, cosine's end", checks.rate(positive=False))
    lr_milestones: tuple[int, ...] = setting(
        (), "steps schedule: the iterations it cuts at", _MILESTONES, metavar="STEP"
    )
    warmup_lr: float = setting(
        0.0, "steps or triangular schedule: warm-up learning rate", checks.rate(positive=False)
    )
    warmup_steps: int = setting(0, "steps or triangular schedule: warm-up iterations", checks.STEPS)
    label_smoothing: float = setting(0.0, "label smoothing of the loss", checks.FRACTION)
    cutout: int = setting(0, "zero a random square of this many pixels a side", checks.PIXELS)
    padding: int = setting(0, "random crop's padding; 0: flips only", checks.PIXELS)
    normalization: str = setting(
        "half",
        "{choices}; data: the training images' mean and std (a recipe's cifar10 becomes data "
        "on other datasets)",
        choices=NORMALIZATION_NAMES,
    )
    flip_tta: bool = setting(False, "average with mirror images", checks.BOOLEAN)
    seed: int = setting(0, "fixes initial weights, data order, augmentation", checks.SEED)
    data_dir: str | None = setting(
        None,
        "tfds data_dir holding (or to receive) the dataset",
        checks.PATH,
        shown="tfds's",
        resumable=True,
    )
    synthetic: bool = setting(False, "generated data: no download", checks.BOOLEAN)
    train_size: int | None = setting(
        None,
        "train on the first N training images",
        checks.rule(lambda v: checks.is_int(v) and v >= 1, "a positive integer", optional=True),
        shown="all",
        metavar="N",
    )
    val_size: int = setting(
        0, "hold out N training images for validation (paper: 5000)", checks.COUNT, metavar="N"
    )
    precision: str = setting("float32", "{choices}", choices=PRECISIONS)
    log_format: str = setting("note", "{choices}", choices=LOG_FORMATS, resumable=True)
    output_dir: str | None = setting(
        None,
        "run folder; re-running the command resumes it",
        checks.PATH,
        shown="runs/<model>[-synthetic|-<dataset>]",
        resumable=True,
    )
    tensorboard: bool = setting(False, "log to RUN/tensorboard/", checks.BOOLEAN, resumable=True)
    dataset: str = setting(
        "cifar10", "a tfds image dataset (cifar100, svhn_cropped, ...) or folder:PATH", _DATASET
    )
    image_size: tuple[int, int] | None = setting(
        None, "resize to H [W]", _IMAGE_SIZE, shown="the images' own", metavar="PIXELS"
    )
    max_memory_gb: float = setting(
        4.0, "a bigger folder: is streamed from disk", checks.POSITIVE, resumable=True
    )
    init_from: str | None = setting(
        None,
        f"start from a .keras model, PyTorch {'/'.join(TORCH_SUFFIXES)} weights, or published "
        "weights NAME:WEIGHTS (resnet20:cifar10; see list)",
        init_source_reason,
        shown="a fresh initialisation",
        metavar="SOURCE",
    )
    freeze_backbone: bool = setting(False, "train only the head", checks.BOOLEAN)

    def __post_init__(self) -> None:
        check_setting("recipe", self.recipe)
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
        if (
            deep_enough
            and "warmup_steps" in unset
            and _model_reason(self.model) is None  # an unknown model: its check names it
            and layer_depth(get_spec(self.model)) < deep_enough
        ):
            object.__setattr__(self, "warmup_steps", 0)
        for field in dataclasses.fields(self):
            check_setting(field.name, getattr(self, field.name))
        _check_together(self)

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
        missing = sorted(set(SETTINGS) - set(data))
        if missing:  # a run begun by an earlier version, which had fewer settings
            raise ConfigError(
                missing[0], "is missing (an earlier version of keras_resnet wrote this file?)"
            )
        unknown = sorted(set(data) - set(SETTINGS))
        if unknown:
            raise ConfigError(unknown[0], "is not a setting of this version")
        return cls(**data)

    def changed_settings(self, other: TrainConfig) -> dict[str, tuple]:
        """``{field: (ours, theirs)}`` for the fields that differ and may not change on resume."""
        ours, theirs = self.to_json(), other.to_json()
        return {
            name: (ours[name], theirs[name])
            for name in ours
            if name not in RESUMABLE_CHANGES and ours[name] != theirs[name]
        }


SETTINGS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
NOTES: dict[str, Any] = {name: field.metadata["notes"] for name, field in SETTINGS.items()}
RESUMABLE_CHANGES = frozenset(name for name, f in SETTINGS.items() if f.metadata["resumable"])


def check_setting(name: str, value: Any) -> None:
    """Refuse ``value`` for the setting ``name`` by its declared rule, naming both."""
    if reason := SETTINGS[name].metadata["check"](value):
        raise ConfigError(name, reason)


def _square(size):
    """``image_size`` as (height, width): one number means a square; lists become tuples."""
    if checks.is_int(size):
        return (size, size)
    if isinstance(size, list | tuple):
        return tuple(size) * 2 if len(size) == 1 else tuple(size)
    return size


def _check_together(c: TrainConfig) -> None:
    """The rules that tie settings to each other; each alone has passed its own check."""
    smallest = downsampling(get_spec(c.model))
    rules = (  # (holds, the setting to blame, why not)
        (c.min_lr < c.lr, "min_lr", f"must be below lr ({c.lr!r}), got {c.min_lr!r}"),
        # The steps schedule holds warmup_lr during the warm-up; triangular ramps from it, so 0
        # is a fine start there.
        (
            not (c.warmup_steps and c.schedule == "steps" and not c.warmup_lr > 0),
            "warmup_lr",
            f"must be positive for a warm-up of the steps schedule, got {c.warmup_lr!r}",
        ),
        (
            not c.warmup_steps or c.schedule in WARMUP_SCHEDULES,
            "warmup_steps",
            f"needs the steps or triangular schedule ({c.schedule} has no warm-up)",
        ),
        # Without a validation split the Keras plateau rule would watch the test set.
        (
            c.schedule != "plateau" or c.val_size > 0,
            "schedule",
            "plateau follows the validation accuracy and needs a validation split (val_size); "
            "torch_plateau follows the training loss",
        ),
        (
            not c.synthetic or c.dataset == NOTES["dataset"],
            "synthetic",
            f"generates CIFAR-10-like data; it cannot stand in for --dataset {c.dataset}",
        ),
        (
            c.image_size is None or min(c.image_size) >= smallest,
            "image_size",
            f"must be at least {smallest} pixels a side for {c.model}, got {c.image_size!r}",
        ),
        (
            not (c.image_size and c.synthetic),
            "image_size",
            "does not apply to --synthetic data, which is 32x32",
        ),
        # A frozen backbone that was never trained gives the head random features to learn from.
        (
            not c.freeze_backbone or c.init_from is not None,
            "freeze_backbone",
            "needs init_from: the backbone it freezes must come from trained weights",
        ),
    )
    for holds, name, reason in rules:
        if not holds:
            raise ConfigError(name, reason)
