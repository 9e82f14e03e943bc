"""Select the JAX backend before Keras is first imported, and XLA's faster CPU convolutions.

Keras reads ``KERAS_BACKEND`` once, at import time, so this module must run before anything
imports ``keras``. A user who already chose another backend gets a clear error instead of a
model that silently runs somewhere else.
"""

import importlib.metadata
import os
import sys

REQUIRED_BACKEND = "jax"
# jaxlib 0.10's XLA hands CPU convolutions to YNNPACK; its Eigen convolutions are 1.5-3.6x
# faster on ResNet's 3x3 shapes on x86-64 (benchmarks/cpu_convolutions.py), which nearly doubles
# CPU training speed. Both compute in float32 without approximations. The flag only exists in
# the jaxlib releases it was measured on, and XLA aborts on an unknown flag, hence the check.
EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
MEASURED_JAXLIB = "0.10."


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
    """Add ``EIGEN_CONVOLUTIONS`` to ``XLA_FLAGS`` unless the user set that option already.

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
    if jaxlib.startswith(MEASURED_JAXLIB):
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
