"""Flip test-time augmentation: the mean of the logits of each image and of its mirror image."""

import keras
import numpy as np
import pytest

from keras_resnet.trainer.data import CLASS_NAMES, Split
from keras_resnet.trainer.evaluation import cross_entropy, evaluate, predict_logits


def small_model(mirror_symmetric: bool) -> keras.Model:
    """A 3x3 convolution (padding 1 on both sides), ReLU, global pooling and a dense head.

    With a left-right symmetric kernel the network gives a mirror image the same logits.
    """
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(8, 3, padding="same")
    x = keras.layers.ReLU()(conv(x))
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    kernel, bias = conv.get_weights()
    kernel = np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32)
    if mirror_symmetric:
        kernel = (kernel + kernel[:, ::-1]) / 2
    conv.set_weights([kernel, bias + 0.1])
    return model


def random_split(n: int = 50) -> Split:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return Split(images, rng.integers(0, 10, size=n).astype(np.int32))


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    model, split = small_model(mirror_symmetric=True), random_split()
    plain = predict_logits(model, split, batch_size=16)
    assert plain.shape == (50, 10) and plain.dtype == np.float64
    np.testing.assert_allclose(predict_logits(model, split, 16, flip_tta=True), plain, atol=1e-5)


def test_flip_tta_is_the_mean_over_the_mirror_images():
    model, split = small_model(mirror_symmetric=False), random_split()
    by_hand = (
        model.predict(split.images, batch_size=16, verbose=0)
        + model.predict(split.images[:, :, ::-1], batch_size=16, verbose=0)
    ) / 2
    plain = predict_logits(model, split, batch_size=16)
    tta = predict_logits(model, split, batch_size=16, flip_tta=True)
    np.testing.assert_allclose(tta, by_hand, rtol=1e-5, atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-3  # the check can tell: this model is not symmetric
    np.testing.assert_array_equal(split.images, random_split().images)  # input untouched

    metrics = evaluate(model, split, CLASS_NAMES, batch_size=16, flip_tta=True)
    assert metrics["test_loss"] == pytest.approx(cross_entropy(tta, split.labels))
    assert metrics["test_accuracy"] == pytest.approx(np.mean(tta.argmax(-1) == split.labels))
    unflipped = evaluate(model, split, CLASS_NAMES, batch_size=16)
    assert unflipped["test_loss"] == pytest.approx(cross_entropy(plain, split.labels))
    assert unflipped["test_loss"] != pytest.approx(metrics["test_loss"])
