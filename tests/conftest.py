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

import socket

import keras
import pytest

import keras_resnet  # noqa: F401  (registers the layers before any test loads a model)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.clear_session(free_memory=False)  # gc.collect() costs ~0.5 s a test
    yield


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache of this test's own, offline: nothing may reach the network."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    return home
