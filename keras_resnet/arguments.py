"""Checks of layer arguments that need no Keras: the trainer's configuration runs them before
Keras is imported, so that a bad flag is refused at once."""

from __future__ import annotations

MAX_PIXELS = 64  # the largest crop padding or cutout side RandomCropFlip takes


def check_crop_flip(padding, cutout, seed) -> None:
    """``RandomCropFlip``'s arguments; a ValueError that starts with the argument's name."""
    for name, value in (("padding", padding), ("cutout", cutout)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PIXELS:
            raise ValueError(
                f"{name} must be an integer from 0 to {MAX_PIXELS} pixels, got {value!r}"
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
