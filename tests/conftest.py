"""Test settings: JAX on CPU, quiet TensorFlow, no compilation cache, and a fresh Keras session
per test.

train() restores the dtype policy, seeds and distribution itself; no test resets them.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No test writes XLA's compilation cache into the user's folder (test_startup checks it on its own).
os.environ["KERAS_RESNET_XLA_CACHE"] = "0"

import keras
import pytest

import keras_resnet  # noqa: F401  (registers the layers before any test loads a model)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.clear_session(free_memory=False)  # gc.collect() costs ~0.5 s a test
    yield
