"""The value checks every module shares: the training settings, the layers' arguments and the
run folder's saved state use the same rules and the same wording.

None needs Keras, so the configuration runs them before Keras is imported and a bad flag is
refused at once. A ``Check`` returns why a value is refused (``"must be ..., got ..."``), or
None when it is fine.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Check = Callable[[Any], "str | None"]

MAX_PIXELS = 64  # the largest crop padding or cutout side RandomCropFlip takes
# Iteration counts go to the optimizer as int32.
MAX_STEPS = 2**31 - 1
# Rates and decays reach the optimizer as float32: a smaller one would silently become 0.
FLOAT32_RANGE = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))


def is_int(value) -> bool:
    """An integer, and not a bool (``True`` is an ``int`` to Python, never a count to us)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value, *, finite: bool = True) -> bool:
    """A real number, and not a bool; ``finite`` refuses infinities and NaN."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and (not finite or math.isfinite(value))


def rule(test: Callable[[Any], bool], requirement: str, *, optional: bool = False) -> Check:
    """A check that refuses a value failing ``test`` with "must be ``requirement``, got ...";
    ``optional`` lets None through."""

    def check(value) -> str | None:
        if (optional and value is None) or test(value):
            return None
        return f"must be {requirement}, got {value!r}"

    return check


def one_of(choices: Sequence[str]) -> Check:
    return rule(lambda value: value in choices, f"one of {', '.join(choices)}")


def rate(*, positive: bool = True) -> Check:
    """A number float32 holds as it is: 0 (unless ``positive``), or from its smallest normal
    value to its largest."""
    low, high = FLOAT32_RANGE

    def test(value) -> bool:
        if not is_number(value) or value < 0:
            return False
        return (value == 0 and not positive) or low <= value <= high

    lowest = "a positive number" if positive else "0 or a number"
    return rule(test, f"{lowest} from {low:.3g} to {high:.3g} (float32)")


BOOLEAN = rule(lambda v: isinstance(v, bool), "True or False")
POSITIVE_INT = rule(lambda v: is_int(v) and v >= 1, "a positive integer")
COUNT = rule(lambda v: is_int(v) and v >= 0, "0 or more")
STEPS = rule(lambda v: is_int(v) and 0 <= v <= MAX_STEPS, f"a step count from 0 to {MAX_STEPS}")
POSITIVE = rule(lambda v: is_number(v) and v > 0, "a positive number")
NON_NEGATIVE = rule(lambda v: is_number(v) and v >= 0, "a non-negative number")
FRACTION = rule(lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)")
PATH = rule(lambda v: isinstance(v, str) and v != "", "a non-empty path", optional=True)
PIXELS = rule(
    lambda v: is_int(v) and 0 <= v <= MAX_PIXELS, f"an integer from 0 to {MAX_PIXELS} pixels"
)
SEED = rule(lambda v: is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1")


def check_crop_flip(padding, cutout, seed) -> None:
    """``RandomCropFlip``'s arguments; a ValueError that starts with the argument's name."""
    for name, value, check in (("padding", padding, PIXELS), ("cutout", cutout, PIXELS)):
        if reason := check(value):
            raise ValueError(f"{name} {reason}")
    if reason := SEED(seed):
        raise ValueError(f"seed {reason}")
