"""train() leaves the process as it found it: seeds, dtype policy and distribution."""

import random

import keras
import numpy as np

from keras_resnet import models
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.fit import process_settings, train


def test_process_settings_are_restored_after_the_run():
    keras.mixed_precision.set_global_policy("float16")
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    with process_settings(seed=7, precision="mixed_bfloat16"):
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        inside = random.random()
    assert keras.mixed_precision.dtype_policy().name == "float16"
    assert (random.random(), np.random.random()) == expected
    random.seed(7)
    assert inside == random.random()  # the run itself was seeded
    keras.mixed_precision.set_global_policy("float32")


def test_a_run_restores_the_policy_and_the_distribution(tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    config = TrainConfig(
        model="tiny_resnet6",
        epochs=1,
        batch_size=64,
        synthetic=True,
        train_size=128,
        precision="mixed_bfloat16",
        output_dir=str(tmp_path / "run"),
    )
    train(config, verbose=0)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    assert keras.distribution.distribution() is None


def test_the_same_seed_builds_the_same_weights_whatever_ran_before(tmp_path):
    def first_kernel() -> np.ndarray:
        with process_settings(seed=3, precision="float32"):
            model = models.build("tiny_resnet6")
        return np.asarray(model.get_layer("stem_conv").kernel)

    before = first_kernel()
    keras.random.uniform((3,))  # draws from Keras's global generator in between
    np.testing.assert_array_equal(first_kernel(), before)
