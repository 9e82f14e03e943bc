"""The named recipes: each published run as the settings where it differs from the notes'
(``TrainConfig``'s declared values), so that ``--recipe paper`` is He et al.'s CIFAR-10 run.
"""

from __future__ import annotations

from typing import Any

from keras_resnet.trainer.data.cifar10 import PAD

RECIPES: dict[str, dict[str, Any]] = {
    # The notes' run: every field's declared value below.
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
    # kuangliu/pytorch-cifar's main.py: ResNet-18, crop + flip, its mean/std, SGD 0.1/0.9/5e-4,
    # CosineAnnealingLR(T_max=200) stepped once an epoch.
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
