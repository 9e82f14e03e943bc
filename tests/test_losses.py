"""SmoothedSparseCrossentropy equals Keras's smoothed categorical loss on one-hot labels."""

import keras
import numpy as np
import pytest

from keras_resnet.losses import SmoothedSparseCrossentropy

CLASSES = 10


def batch(n: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, CLASSES)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=(n,)).astype(np.int32)
    return logits, labels


def value(loss, labels, predictions, **kwargs) -> float:
    return float(keras.ops.convert_to_numpy(loss(labels, predictions, **kwargs)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.2, 0.5])
def test_matches_keras_categorical_on_one_hot_labels(smoothing):
    logits, labels = batch()
    one_hot = np.eye(CLASSES, dtype=np.float32)[labels]
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing, from_logits=True)
    ours = SmoothedSparseCrossentropy(label_smoothing=smoothing)
    for shaped in (labels, labels[:, None]):  # (N,) and (N, 1)
        assert value(ours, shaped, logits) == pytest.approx(
            value(expected, one_hot, logits), rel=1e-6
        )
    # Per example too, and with sample weights.
    weights = np.random.default_rng(1).uniform(size=len(labels)).astype(np.float32)
    assert value(ours, labels, logits, sample_weight=weights) == pytest.approx(
        value(expected, one_hot, logits, sample_weight=weights), rel=1e-6
    )
    per_example = SmoothedSparseCrossentropy(smoothing, reduction=None)(labels, logits)
    reference = keras.losses.CategoricalCrossentropy(
        label_smoothing=smoothing, from_logits=True, reduction=None
    )(one_hot, logits)
    np.testing.assert_allclose(per_example, reference, rtol=1e-6)


def test_matches_keras_on_probabilities():
    logits, labels = batch()
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    one_hot = np.eye(CLASSES, dtype=np.float32)[labels]
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    ours = SmoothedSparseCrossentropy(0.1, from_logits=False)
    assert value(ours, labels, probabilities) == pytest.approx(
        value(expected, one_hot, probabilities), rel=1e-6
    )


def test_without_smoothing_equals_sparse_crossentropy():
    logits, labels = batch(seed=3)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert value(SmoothedSparseCrossentropy(), labels, logits) == pytest.approx(
        value(expected, labels, logits), rel=1e-6
    )


def test_smoothing_is_the_formula():
    logits, labels = batch(n=5, seed=4)
    s = 0.1
    log_probs = (
        logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1))[:, None]
    )
    per_example = -(1 - s) * log_probs[np.arange(5), labels] - s * log_probs.mean(-1)
    assert value(SmoothedSparseCrossentropy(s), labels, logits) == pytest.approx(
        per_example.mean(), rel=1e-6
    )


def test_computes_in_float32_from_bfloat16_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        logits, labels = batch(seed=5)
        low = keras.ops.cast(logits, "bfloat16")
        loss = SmoothedSparseCrossentropy(0.1)
        assert loss.dtype == "float32"
        result = loss(labels, low)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.dtype == "float32"
    reference = value(SmoothedSparseCrossentropy(0.1), labels, keras.ops.cast(low, "float32"))
    assert float(result) == reference


def test_config_round_trip_and_saving(tmp_path):
    loss = SmoothedSparseCrossentropy(label_smoothing=0.2, from_logits=False, name="smooth")
    config = loss.get_config()
    assert config["label_smoothing"] == 0.2 and config["from_logits"] is False
    assert config["name"] == "smooth"
    for restored in (
        SmoothedSparseCrossentropy.from_config(config),
        keras.losses.deserialize(keras.losses.serialize(loss)),
    ):
        assert isinstance(restored, SmoothedSparseCrossentropy)
        assert restored.get_config() == config

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=SmoothedSparseCrossentropy(0.1))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, SmoothedSparseCrossentropy)
    assert loaded.loss.label_smoothing == 0.1 and loaded.loss.from_logits is True


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5, float("nan"), "0.1"])
def test_bad_smoothing_is_named(smoothing):
    with pytest.raises(ValueError, match="label_smoothing") as info:
        SmoothedSparseCrossentropy(label_smoothing=smoothing)
    assert repr(smoothing) in str(info.value)


def test_bad_from_logits_is_named():
    with pytest.raises(ValueError, match=r"from_logits .* got 'yes'"):
        SmoothedSparseCrossentropy(from_logits="yes")
