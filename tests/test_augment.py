"""RandomCropFlip: the notes' crop and flip (and cutout) inside the model, seeded by step."""

import keras
import numpy as np
import pytest

from keras_resnet import build
from keras_resnet.augment import RandomCropFlip
from keras_resnet.saving import load_model
from keras_resnet.trainer.data import PAD


def nonzero_images(n: int, seed: int = 0) -> np.ndarray:
    """Random pixel values with no zero, so the zero padding is recognisable."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(n, 32, 32, 3)).astype("float32")


def augmented(layer: RandomCropFlip, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(images, training=True))


def find_window(source: np.ndarray, output: np.ndarray) -> list[tuple[int, int, bool]]:
    """Every (top, left, flipped) whose 32x32 window of the zero-padded ``source`` equals
    ``output``."""
    padded = np.pad(source, ((PAD, PAD), (PAD, PAD), (0, 0)))
    matches = []
    for top in range(2 * PAD + 1):
        for left in range(2 * PAD + 1):
            window = padded[top : top + 32, left : left + 32]
            if np.array_equal(window, output):
                matches.append((top, left, False))
            if np.array_equal(window[:, ::-1], output):
                matches.append((top, left, True))
    return matches


def test_inference_passes_images_through_and_does_not_count():
    layer = RandomCropFlip(cutout=12, seed=1)
    images = nonzero_images(8)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images)), images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    assert int(layer.step.value) == 0


def test_crops_padded_windows_and_flips():
    n = 300
    images = nonzero_images(n, seed=5)
    out = augmented(RandomCropFlip(seed=11), images)
    assert out.shape == images.shape and out.dtype == images.dtype
    found = []
    for source, result in zip(images, out, strict=True):
        matches = find_window(source, result)
        assert len(matches) == 1, matches
        found.append(matches[0])
    tops, lefts, flips = (np.array(values) for values in zip(*found, strict=True))
    assert set(tops) == set(range(9)) and set(lefts) == set(range(9))
    assert len(set(zip(tops, lefts, strict=True))) > 40
    assert 0.4 < flips.mean() < 0.6
    assert np.mean((tops != PAD) | (lefts != PAD) | flips) > 0.8  # most images changed

    # The largest offsets show the zero padding at the borders (input has no zero pixel).
    for i in np.flatnonzero(tops == 0):
        assert not out[i, :PAD].any() and out[i, PAD].any()
    for i in np.flatnonzero(tops == 2 * PAD):
        assert not out[i, -PAD:].any()
    for i in np.flatnonzero((lefts == 0) & ~flips):
        assert not out[i, :, :PAD].any()
    for i in np.flatnonzero((lefts == 0) & flips):
        assert not out[i, :, -PAD:].any()
    for i in np.flatnonzero((tops == PAD) & (lefts == PAD)):
        assert out[i].all()  # centred: no padding at all


def cutout_squares(size: int) -> np.ndarray:
    """(32 * 32, 32, 32): the square of side ``size`` centred at each pixel, clipped."""
    first = np.arange(32) - size // 2
    lines = (first[:, None] <= np.arange(32)) & (np.arange(32) < first[:, None] + size)
    return (lines[:, None, :, None] & lines[None, :, None, :]).reshape(32 * 32, 32, 32)


@pytest.mark.parametrize("size", [12, 5])
def test_cutout_zeroes_one_square_after_crop_and_flip(size):
    n = 400
    images = nonzero_images(n, seed=6)
    cropped = augmented(RandomCropFlip(seed=8), images)
    out = augmented(RandomCropFlip(cutout=size, seed=8), images)
    zero = ~out.any(axis=-1)
    # Only whole pixels were zeroed; the rest is the same crop and flip as without cutout.
    np.testing.assert_array_equal(out, np.where(zero[..., None], 0, cropped))
    padding = ~cropped.any(axis=-1)  # the input has no zero pixel
    squares = cutout_squares(size)
    centres = []
    for i in range(n):
        matches = np.flatnonzero(((padding[i] | squares) == zero[i]).all(axis=(1, 2)))
        assert len(matches) >= 1, i  # the zeros are the padding plus one square
        if len(matches) == 1:
            centres.append(divmod(int(matches[0]), 32))
    assert len(centres) > 0.9 * n
    rows, cols = np.array(centres).T
    # Centres anywhere in the image, so squares are clipped at all four borders.
    assert set(rows) == set(range(32)) and set(cols) == set(range(32))
    areas = squares[rows * 32 + cols].sum(axis=(1, 2))
    inside = (rows >= size // 2) & (rows + size - size // 2 <= 32)
    inside &= (cols >= size // 2) & (cols + size - size // 2 <= 32)
    assert inside.any() and (~inside).any()
    assert (areas[inside] == size * size).all()
    assert (areas[~inside] < size * size).all()


def test_each_batch_follows_seed_and_step():
    images = nonzero_images(50, seed=2)
    layer = RandomCropFlip(cutout=12, seed=5)
    first, second = augmented(layer, images), augmented(layer, images)
    assert int(layer.step.value) == 2
    assert not np.array_equal(first, second)  # a new draw every batch
    again = RandomCropFlip(cutout=12, seed=5)
    np.testing.assert_array_equal(augmented(again, images), first)
    np.testing.assert_array_equal(augmented(again, images), second)
    assert not np.array_equal(augmented(RandomCropFlip(cutout=12, seed=6), images), first)


def test_saved_step_continues_the_stream(tmp_path):
    """A model reloaded from a checkpoint augments its next batch as an unbroken one would."""
    images = nonzero_images(16, seed=3)

    def model():
        inputs = keras.Input((32, 32, 3))
        return keras.Model(inputs, RandomCropFlip(cutout=8, seed=9, name="augment")(inputs))

    unbroken, first = model(), model()
    for _ in range(3):
        unbroken(images, training=True)
        first(images, training=True)
    first.save(tmp_path / "m.keras")
    resumed = load_model(tmp_path / "m.keras")
    layer = resumed.get_layer("augment")
    assert isinstance(layer, RandomCropFlip) and int(layer.step.value) == 3
    assert (layer.padding, layer.cutout, layer.seed) == (PAD, 8, 9)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(resumed(images, training=True)),
        keras.ops.convert_to_numpy(unbroken(images, training=True)),
    )


def test_in_a_network_it_changes_training_only():
    images = nonzero_images(4, seed=1)
    plain = build("resnet8", input_normalization=((0.5,) * 3, (0.25,) * 3))
    augmenting = build(
        "resnet8",
        input_normalization=((0.5,) * 3, (0.25,) * 3),
        augmentation=RandomCropFlip(seed=0, name="augment"),
    )
    augmenting.set_weights([np.int32(0), *plain.get_weights()])  # the step counter first
    assert augmenting.count_params() == plain.count_params() + 1  # the step counter
    np.testing.assert_allclose(
        augmenting.predict(images, verbose=0), plain.predict(images, verbose=0), atol=1e-6
    )
    assert int(augmenting.get_layer("augment").step.value) == 0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"padding": -1}, "padding"),
        ({"padding": 2.5}, "padding"),
        ({"cutout": -12}, "cutout"),
        ({"cutout": True}, "cutout"),
        ({"cutout": 65}, "cutout"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
    ],
)
def test_bad_settings_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named) as info:
        RandomCropFlip(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_build_refuses_an_augmentation_that_is_not_a_layer():
    with pytest.raises(ValueError, match=r"augmentation must be a keras Layer.*'flip'"):
        build("resnet8", augmentation="flip")
