"""Select the JAX backend before Keras is first imported, and XLA's faster CPU convolutions.

Keras reads ``KERAS_BACKEND`` once, at import time, so this module must run before anything
imports ``keras``. A user who already chose another backend gets a clear error instead of a
model that silently runs somewhere else.
"""

import importlib.metadata
import os
import platform
import sys

REQUIRED_BACKEND = "jax"
# jaxlib 0.10's XLA hands CPU convolutions to YNNPACK; its Eigen convolutions are 1.5-3.6x
# faster on ResNet's 3x3 shapes on x86-64 (benchmarks/cpu_convolutions.py), which nearly doubles
# CPU training speed. Both compute in float32 without approximations. It is set only where it
# was measured: XLA aborts on an unknown flag (other jaxlib releases), and YNNPACK's balance
# against Eigen may differ on other processors.
EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
MEASURED_JAXLIB = "0.10."
MEASURED_MACHINES = ("x86_64", "AMD64")


def select_jax_backend() -> None:
    """Make Keras use JAX, or fail with a message that says how to fix the environment."""
    # Keras loads TensorFlow for file and data utilities (never for the model's numbers); keep
    # its start-up chatter off the console. oneDNN only affects TensorFlow's own CPU kernels.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    chosen = os.environ.setdefault("KERAS_BACKEND", REQUIRED_BACKEND)
    if chosen != REQUIRED_BACKEND:
        raise ImportError(
            f"keras_resnet runs on the JAX backend, but KERAS_BACKEND={chosen!r}. "
            "Unset KERAS_BACKEND or set it to 'jax'."
        )
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != REQUIRED_BACKEND:
            raise ImportError(
                f"Keras was imported before keras_resnet and is running on the {running!r} "
                "backend. Import keras_resnet first, or set KERAS_BACKEND=jax before starting "
                "Python."
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
