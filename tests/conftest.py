"""Test settings: JAX on CPU, quiet TensorFlow, a compilation cache of the tests' own, quick
compilation, and a fresh Keras session per test.

train() restores the dtype policy, seeds and distribution itself; no test resets them.
"""

import io
import os
import socket
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's compilation cache in a folder of the tests' own, never the user's, given to JAX itself so
# that every process the tests start uses it (the trainer's, and the documentation's and probes'
# plain Python, which the trainer's own cache setting does not reach), for every program however
# quick to compile: Keras compiles one per weight shape to initialise it (resnet50: 119 programs,
# 8 s), and the many tiny runs compile the same few, so each is compiled once and a second run of
# the suite (`-m slow` after the default) reuses them. Read when JAX is imported.
os.environ["JAX_COMPILATION_CACHE_DIR"] = f"{tempfile.gettempdir()}/keras-resnet-tests-xla"
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# XLA compiles with its LLVM optimisations off (the same HLO programs, so the same results up to
# float rounding; set 0 to test with them): a third less time over the suite, which compiles
# far more than it runs, the documentation's blocks included. The README's try-out, the
# benchmarks, multi-device runs (where it can deadlock an all-reduce) and the tests about
# compiling itself turn it off.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest


def pytest_configure(config):
    """Register the layers and the tests' tiny model where tests run: not in pytest-xdist's
    controller, which only hands tests out (importing Keras there would delay the workers'
    start by its 3 s)."""
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        return
    from helpers import TINY_MODEL, TINY_SPEC

    import keras_resnet  # noqa: F401  (registers the layers before any test loads a model)
    from keras_resnet import models

    models.register(TINY_MODEL, **TINY_SPEC)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    import keras

    keras.utils.clear_session(free_memory=False)  # gc.collect() costs ~0.5 s a test
    yield


@pytest.fixture(scope="module")
def quick_figures():
    """Figures built by our code in full but not rasterised: each file is a 1-pixel PNG.

    Drawing a finished run's two figures takes ~0.8 s, more than the run of a tiny net itself;
    the modules that train dozens of runs to test files, resume and refusals use this.
    tests/test_reports.py checks what is drawn, and the other end-to-end runs draw for real.
    """
    from matplotlib.figure import Figure
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(png, format="PNG")

    def savefig(figure, fname, **kwargs):
        if hasattr(fname, "write"):
            fname.write(png.getvalue())
        else:
            with open(fname, "wb") as file:
                file.write(png.getvalue())

    with pytest.MonkeyPatch.context() as patch:  # module-wide: its shared runs too
        patch.setattr(Figure, "savefig", savefig)
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
