"""Per-step learning-rate schedules that live in the optimizer, so a resumed run continues them."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_resnet.checks import is_int, is_number


def _check_rate(name: str, value, positive: bool = False) -> float:
    if not is_number(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} finite number, got {value!r}")
    return float(value)


def _between(start: float, end: float, fraction):
    """``start`` at fraction 0 and ``end`` at 1, both exactly (float32 would miss by an ulp)."""
    return (1.0 - fraction) * start + fraction * end


@keras.saving.register_keras_serializable(package="keras_resnet")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start_lr`` to ``peak_lr``, then linear decay to ``final_lr``.

    The fast CIFAR-10 recipes (94% in a few dozen epochs) use this shape: a short warm-up keeps
    the large batch's high peak rate from diverging early, and annealing to about zero replaces
    the plateau cuts. The rate is ``start_lr`` at step 0, ``peak_lr`` at ``warmup_steps``,
    ``final_lr`` at ``total_steps`` and stays there after. With ``warmup_steps=0`` it starts at
    the peak.
    """

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        warmup_steps: int,
        final_lr: float = 0.0,
        start_lr: float = 0.0,
    ):
        if not is_int(total_steps) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        if not is_int(warmup_steps) or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be an integer from 0 to total_steps ({total_steps}), "
                f"got {warmup_steps!r}"
            )
        self.peak_lr = _check_rate("peak_lr", peak_lr, positive=True)
        self.final_lr = _check_rate("final_lr", final_lr)
        self.start_lr = _check_rate("start_lr", start_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = _between(self.start_lr, self.peak_lr, step / max(self.warmup_steps, 1))
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps:
            fraction = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        else:  # warm-up fills the run: final_lr from total_steps on
            fraction = ops.ones_like(step)
        fall = _between(self.peak_lr, self.final_lr, fraction)
        return ops.where(step < self.warmup_steps, rise, fall)

    def get_config(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_lr": self.final_lr,
            "start_lr": self.start_lr,
        }


@keras.saving.register_keras_serializable(package="keras_resnet")
class EpochCosine(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=min_lr)`` stepped once an epoch.

    kuangliu/pytorch-cifar calls ``scheduler.step()`` after each epoch, so the rate is constant
    within an epoch: ``min_lr + (initial_lr - min_lr) * (1 + cos(pi * e / epochs)) / 2`` for
    epoch ``e`` (from 0), which is ``step // steps_per_epoch``. Past ``epochs`` it rises again,
    as PyTorch's does. Written as a per-step schedule so that it lives in the optimizer and a
    resumed run continues it.
    """

    def __init__(self, initial_lr: float, steps_per_epoch: int, epochs: int, min_lr: float = 0.0):
        for name, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.initial_lr = _check_rate("initial_lr", initial_lr, positive=True)
        self.min_lr = _check_rate("min_lr", min_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)

    def __call__(self, step):
        epoch = ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch)
        phase = ops.mod(epoch, 2 * self.epochs)  # the period, reduced exactly in integers
        # (1 + cos(pi t)) / 2 == sin(pi (1 - t) / 2) ** 2, which float32 keeps accurate near
        # the end of the run, where 1 + cos(pi t) would cancel.
        remaining = ops.cast(self.epochs - phase, "float32") / self.epochs
        weight = ops.square(ops.sin(math.pi / 2 * remaining))
        return self.min_lr + (self.initial_lr - self.min_lr) * weight

    def get_config(self) -> dict:
        return {
            "initial_lr": self.initial_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "min_lr": self.min_lr,
        }
