"""The notes' augmentation as a layer, so it runs inside the compiled training step.

The host then only gathers each shuffled batch of uint8 images (millions of images/s);
cropping, flipping and cutout happen on the device as part of the step. Done in numpy on the
host they ran at ~70,000 images/s on one core: plenty for a CPU, but under 3x what a fast GPU
recipe trains at, so the device would have waited.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet.checks import check_crop_flip


class _FixedSeed(keras.random.SeedGenerator):
    """Hands ``keras.random`` a seed computed in the graph, ``(seed, step)``.

    ``keras.random`` takes an int or a ``SeedGenerator`` on every backend (JAX alone also takes
    an array), so the stateless draw of a step goes through this stand-in. It has no state
    variable of its own: the layer's ``step`` weight is the state.
    """

    def __init__(self, value):  # no super().__init__: that would create a state variable
        self.value = value

    def next(self, ordered: bool = True):
        return self.value


@keras.saving.register_keras_serializable(package="keras_resnet")
class RandomCropFlip(keras.layers.Layer):
    """Random crop of the ``padding``-zero-padded image, random horizontal flip, then cutout.

    The notes' ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip()``; ``cutout`` zeroes
    a ``cutout x cutout`` square centred at a uniformly random pixel, clipped at the borders
    (DeVries & Taylor 2017). It acts only in training; at inference it passes images through.
    Written in ``keras.ops``, so it runs on any Keras backend.

    The random numbers of each batch follow from ``(seed, step)``, where ``step`` counts the
    training batches seen. ``step`` is a saved (non-trainable) weight, so a run resumed from a
    checkpoint draws exactly what an unbroken run would have. The draws are made for the global
    batch, so a data-parallel run augments every image as a single device would.
    """

    def __init__(self, padding: int = 4, cutout: int = 0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        check_crop_flip(padding, cutout, seed)
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
        # uint32: the seed dtype JAX requires, which the other backends accept too.
        seed = ops.stack([ops.convert_to_tensor(self.seed, "uint32"), ops.cast(step, "uint32")])
        n, height, width = ops.shape(images)[:3]
        draws = draw(_FixedSeed(seed), n, height, width, self.padding)
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


def draw(seed: keras.random.SeedGenerator, n, height, width, padding: int):
    """Per image: crop offsets in ``[0, 2 * padding]``, a fair flip, and a cutout centre, all
    from one uniform draw of ``(n, 5)`` numbers in ``[0, 1)``."""
    u = keras.random.uniform((n, 5), seed=seed)
    ranges = ops.convert_to_tensor([2 * padding + 1, 2 * padding + 1, 2, height, width], "float32")
    # The minimum guards against float32 rounding u * range up to range itself.
    picks = ops.cast(ops.minimum(ops.floor(u * ranges), ranges - 1), "int32")
    return picks[:, 0], picks[:, 1], picks[:, 2] == 1, picks[:, 3], picks[:, 4]


def crop_flip_cutout(images, top, left, flip, centre_row, centre_col, padding: int, cutout: int):
    """Image ``i`` is the window at ``(top[i], left[i])`` of the zero-padded image, mirrored
    where ``flip[i]``, with the cutout square centred at ``(centre_row[i], centre_col[i])``
    zeroed. Written as one gather and one multiply, which XLA fuses into the step."""
    n, height, width, channels = ops.shape(images)
    padded = ops.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    row_range, col_range = ops.arange(height, dtype="int32"), ops.arange(width, dtype="int32")
    rows = top[:, None] + row_range
    cols = left[:, None] + col_range
    cols = ops.where(flip[:, None], ops.flip(cols, axis=1), cols)
    # The pixels' indices in the padded batch flattened to (pixels, channels).
    padded_height, padded_width = height + 2 * padding, width + 2 * padding
    image = ops.arange(n, dtype="int32")[:, None, None] * padded_height
    pixels = (image + rows[:, :, None]) * padded_width + cols[:, None, :]
    flat = ops.reshape(padded, (-1, channels))
    out = ops.reshape(ops.take(flat, ops.reshape(pixels, (-1,)), axis=0), ops.shape(images))
    if cutout:
        first_row = centre_row[:, None] - cutout // 2
        first_col = centre_col[:, None] - cutout // 2
        in_rows = ops.logical_and(first_row <= row_range, row_range < first_row + cutout)
        in_cols = ops.logical_and(first_col <= col_range, col_range < first_col + cutout)
        cut = ops.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])
        out = out * ops.cast(ops.logical_not(cut), out.dtype)
    return out
