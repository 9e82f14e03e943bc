"""Test settings: JAX on CPU, quiet TensorFlow, a compilation cache of the tests' own, quick
compilation, and a fresh Keras session per test.

train() restores the dtype policy, seeds and distribution itself; no test resets them.
"""

import os
import socket
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's compilation cache in a folder of the tests' own, never the user's: the many tiny training
# runs (in this process and in the ones tests start) compile the same few programs, so each is
# compiled once, and a second run of the suite (`-m slow` after the default) reuses them. Set
# before the first compilation, when JAX reads it.
os.environ["KERAS_RESNET_XLA_CACHE"] = str(Path(tempfile.gettempdir()) / "keras-resnet-tests-xla")
# XLA compiles with its LLVM optimisations off (the same HLO programs, so the same results up to
# float rounding; set 0 to test with them): a third less time over the suite, which compiles
# far more than it runs, the documentation's blocks included. The README's try-out, the
# benchmarks, multi-device runs (where it can deadlock an all-reduce) and the tests about
# compiling itself turn it off.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import keras
import pytest
from helpers import TINY_MODEL, TINY_SPEC

import keras_resnet  # noqa: F401  (registers the layers before any test loads a model)
from keras_resnet import models
from keras_resnet.trainer import compile_cache

models.register(TINY_MODEL, **TINY_SPEC)

compile_cache.enable()


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
