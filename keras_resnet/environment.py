"""The process settings ``import keras_resnet`` makes, all of them here.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and XLA reads ``XLA_FLAGS`` when
JAX first uses a device; both must therefore be set on import, before the user's code runs.
What is set (each only where the user has not set it already):

- ``KERAS_BACKEND=jax``, the backend this project is measured on and its trainer needs, unless
  Keras was imported already (it then keeps the backend it started with: the library's layers
  and ``build`` are written in ``keras.ops`` and run on any backend);
- ``TF_CPP_MIN_LOG_LEVEL=2`` and ``TF_ENABLE_ONEDNN_OPTS=0``: Keras imports TensorFlow to save
  files and tfds reads through it; its start-up log lines say nothing about this program;
- XLA's Eigen convolutions on x86-64 CPUs with jaxlib 0.10 (``EIGEN_CONVOLUTIONS``).

Set ``KERAS_RESNET_KEEP_ENVIRONMENT=1`` to have none of them set.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from keras_resnet.errors import ConfigError

OPT_OUT = "KERAS_RESNET_KEEP_ENVIRONMENT"
TRAINER_BACKEND = "jax"
# jaxlib 0.10's XLA hands CPU convolutions to YNNPACK; its Eigen convolutions are 1.5-3.6x
# faster on ResNet's 3x3 shapes on x86-64 (benchmarks/cpu_convolutions.py), which nearly doubles
# CPU training speed. Both compute in float32 without approximations. It is set only where it
# was measured: XLA aborts on an unknown flag (other jaxlib releases), and YNNPACK's balance
# against Eigen may differ on other processors.
EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
MEASURED_JAXLIB = "0.10."
MEASURED_MACHINES = ("x86_64", "AMD64")


def configure() -> None:
    """Apply the settings above unless the user opted out."""
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "keras" not in sys.modules:  # else the variable would misdescribe the running Keras
        os.environ.setdefault("KERAS_BACKEND", TRAINER_BACKEND)
    prefer_eigen_convolutions()


def require_trainer_backend() -> None:
    """The trainer runs on JAX only (multi-host, its benchmarks); refuse any other backend with
    the line to add.

    Before Keras is imported, a set ``KERAS_BACKEND`` is the backend it will take (the variable
    wins over Keras's config file), so another one is refused without importing Keras and the
    framework behind it (TensorFlow: 4 s).
    """
    chosen = os.environ.get("KERAS_BACKEND") if "keras" not in sys.modules else None
    if not chosen:
        import keras

        chosen = keras.backend.backend()
    if chosen != TRAINER_BACKEND:
        raise ConfigError(
            "KERAS_BACKEND",
            f"is {chosen!r}, but the trainer runs on JAX: start Python with KERAS_BACKEND=jax, "
            "or put `import os; os.environ['KERAS_BACKEND'] = 'jax'` before the first "
            "`import keras`",
        )


def prefer_eigen_convolutions() -> None:
    """Add ``EIGEN_CONVOLUTIONS`` to ``XLA_FLAGS`` on x86-64 with jaxlib 0.10, unless the user
    set that option already.

    XLA reads the flags when JAX first uses a device, so this works even after ``import jax``.
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution`` restores
    jaxlib's default. GPUs are unaffected.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return
    try:
        jaxlib = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return
    if jaxlib.startswith(MEASURED_JAXLIB) and platform.machine() in MEASURED_MACHINES:
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
