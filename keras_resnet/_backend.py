"""Select the JAX backend before Keras is first imported.

Keras reads ``KERAS_BACKEND`` once, at import time, so this module must run before anything
imports ``keras``. A user who already chose another backend gets a clear error instead of a
model that silently runs somewhere else.
"""

import os
import sys

REQUIRED_BACKEND = "jax"


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
