"""Exporting a model for serving outside Keras: a TensorFlow SavedModel.

Keras's own ``model.export`` does the work (on the JAX backend it converts the inference
function with jax2tf); this module adds what a command needs around it: the output appears
whole or not at all, an existing one is replaced only when asked, and bad paths get one line.
The model is exported in inference mode, so an augmentation layer inside it passes images
through; a model with its normalisation inside (as ``train.py`` saves them) serves raw
0-255 pixels.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import keras

from keras_resnet.errors import ConfigError

FORMATS = ("saved_model",)


def export(
    model: keras.Model, output: str | Path, format: str = "saved_model", overwrite: bool = False
) -> Path:
    """Write ``model`` to the folder ``output`` in ``format``; return the folder.

    The SavedModel's ``serving_default`` signature (also the ``serve`` method) maps a float32
    ``(batch, height, width, channels)`` tensor named ``image`` to the model's outputs.
    """
    if format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {format!r}")
    output = Path(output)
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise ConfigError(
            "output",
            f"{str(output)!r} already exists; choose another path, or overwrite it (--overwrite)",
        )
    import_tensorflow()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError("output", f"{str(output)!r} cannot be written: {reason}") from error
    try:
        written = scratch / "export"
        model.export(str(written), format="tf_saved_model", verbose=False)
        _move_into_place(written, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output


def _move_into_place(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``. An old ``target`` is first moved beside ``source``
    (whose folder the caller removes), so ``target`` is never a half-written folder."""
    if target.exists() or target.is_symlink():
        os.replace(target, source.parent / "previous")
    os.replace(source, target)


def import_tensorflow():
    """TensorFlow, for writing files only: it must not reserve the GPU memory JAX computes in."""
    import tensorflow as tf

    # RuntimeError: TensorFlow already started its devices in this process; they stand.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    return tf
