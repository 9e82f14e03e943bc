"""The notes' augmentation as a layer, so it runs inside the compiled training step.

The host then only gathers each shuffled batch of uint8 images (millions of images/s);
cropping, flipping and cutout happen on the device as part of the step. Done in numpy on the
host they ran at ~70,000 images/s on one core: plenty for a CPU, but under 3x what a fast GPU
recipe trains at, so the device would have waited.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras


def _check_size(name: str, value, largest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ValueError(f"{name} must be an integer from 0 to {largest} pixels, got {value!r}")


@keras.saving.register_keras_serializable(package="keras_resnet")
class RandomCropFlip(keras.layers.Layer):
    """Random crop of the ``padding``-zero-padded image, random horizontal flip, then cutout.

    The notes' ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip()``; ``cutout`` zeroes
    a ``cutout x cutout`` square centred at a uniformly random pixel, clipped at the borders
    (DeVries & Taylor 2017). It acts only in training; at inference it passes images through.

    The random numbers of each batch follow from ``(seed, step)``, where ``step`` counts the
    training batches seen. ``step`` is a saved (non-trainable) weight, so a run resumed from a
    checkpoint draws exactly what an unbroken run would have. The draws are made for the global
    batch, so a data-parallel run augments every image as a single device would.
    """

    def __init__(self, padding: int = 4, cutout: int = 0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        _check_size("padding", padding, 64)
        _check_size("cutout", cutout, 64)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
        self.padding = padding
        self.cutout = cutout
        self.seed = seed

    def build(self, input_shape):
        self.step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="step"
        )

    def call(self, images, training=False):
        if not training:
            return images
        step = self.step.value
        self.step.assign(step + 1)
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        n, height, width = images.shape[:3]
        draws = draw(key, n, height, width, self.padding)
        return crop_flip_cutout(images, *draws, self.padding, self.cutout)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "padding": self.padding,
            "cutout": self.cutout,
            "seed": self.seed,
        }


def draw(key: jax.Array, n: int, height: int, width: int, padding: int):
    """Per image: crop offsets in ``[0, 2 * padding]``, a fair flip, and a cutout centre."""
    keys = jax.random.split(key, 5)
    return (
        jax.random.randint(keys[0], (n,), 0, 2 * padding + 1),
        jax.random.randint(keys[1], (n,), 0, 2 * padding + 1),
        jax.random.bernoulli(keys[2], 0.5, (n,)),
        jax.random.randint(keys[3], (n,), 0, height),
        jax.random.randint(keys[4], (n,), 0, width),
    )


def crop_flip_cutout(images, top, left, flip, centre_row, centre_col, padding: int, cutout: int):
    """Image ``i`` is the window at ``(top[i], left[i])`` of the zero-padded image, mirrored
    where ``flip[i]``, with the cutout square centred at ``(centre_row[i], centre_col[i])``
    zeroed. Written as one gather and one multiply, which XLA fuses into the step."""
    n, height, width = images.shape[0], images.shape[1], images.shape[2]
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = jnp.pad(images, pad)
    rows = top[:, None] + jnp.arange(height)
    cols = left[:, None] + jnp.arange(width)
    cols = jnp.where(flip[:, None], cols[:, ::-1], cols)
    out = padded[jnp.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if cutout:
        first_row = centre_row[:, None] - cutout // 2
        first_col = centre_col[:, None] - cutout // 2
        in_rows = (first_row <= jnp.arange(height)) & (jnp.arange(height) < first_row + cutout)
        in_cols = (first_col <= jnp.arange(width)) & (jnp.arange(width) < first_col + cutout)
        keep = ~(in_rows[:, :, None, None] & in_cols[:, None, :, None])
        out = out * keep.astype(out.dtype)
    return out
