"""Named training recipes: each is one block of data over ``TrainConfig``'s defaults.

Flags given on the command line override the recipe's values; ``config.json`` records the
result, so a run can be repeated exactly.
"""

from __future__ import annotations

from keras_resnet.models import get_spec, layer_depth
from keras_resnet.training import TrainConfig

RECIPES: dict[str, dict] = {
    # The notes' run: TrainConfig's defaults (50 epochs, SGD 0.1, momentum 0.9, weight decay
    # 5e-4 in PyTorch's sense, ReduceLROnPlateau on the test accuracy).
    "note": {},
    # He et al. 2015, section 4.2: batch 128, weight decay 1e-4, lr 0.1 divided by 10 at 32k and
    # 48k iterations, stop at 64k (182 epochs of 352 steps on the 45k/5k split), and a 0.01
    # warm-up for the first 400 iterations of ResNet-110 and deeper.
    "paper": {
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
        "warmup_from_depth": 110,
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
    },
}


def resolve(recipe: str = "note", **flags) -> TrainConfig:
    """The configuration of ``recipe`` with ``flags`` (explicitly given values) on top."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    preset = dict(RECIPES[recipe])
    warmup_from_depth = preset.pop("warmup_from_depth", None)
    config = TrainConfig(**{**preset, **flags, "recipe": recipe})
    shallow = warmup_from_depth and layer_depth(get_spec(config.model)) < warmup_from_depth
    if shallow and "warmup_steps" not in flags:
        config.warmup_steps = 0
    return config
