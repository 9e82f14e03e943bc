"""Models saved by an earlier version of this project still load and predict the same."""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_resnet  # noqa: F401  (registers the layers)

DATA = Path(__file__).parent / "data"
EXPECTED = np.load(DATA / "legacy-outputs.npz")


@pytest.mark.parametrize(
    ("file", "key"),
    [
        ("legacy-resnet8-trained.keras", "trained"),
        ("legacy-bottleneck.keras", "bottleneck"),
        ("legacy-preact_basic.keras", "preact_basic"),
        ("legacy-preact_bottleneck.keras", "preact_bottleneck"),
    ],
)
def test_models_saved_by_the_earlier_layout_load_and_predict_the_same(file, key):
    model = keras.saving.load_model(DATA / file, safe_mode=True)
    predicted = model.predict(EXPECTED["inputs"], verbose=0)
    np.testing.assert_allclose(predicted, EXPECTED[key], rtol=1e-5, atol=1e-5)


def test_a_saved_training_run_keeps_its_optimizer_state():
    model = keras.saving.load_model(DATA / "legacy-resnet8-trained.keras", safe_mode=True)
    assert type(model.optimizer).__name__ == "TorchSGD"
    assert model.optimizer.l2 == pytest.approx(5e-4)
    assert int(model.optimizer.iterations.numpy()) == 1
    assert model.get_layer("augment").cutout == 4
