"""Exporting a model for serving outside Keras: a TensorFlow SavedModel or an ONNX file.

Keras's own ``model.export`` does the work (on the JAX backend it converts the inference
function with jax2tf for a SavedModel, with jax2onnx for ONNX); this module adds what a command
needs around it: the output appears whole or not at all, an existing one is replaced only when
asked, and bad paths get one line.
The model is exported in inference mode, so an augmentation layer inside it passes images
through; a model with its normalisation inside (as ``train.py`` saves them) serves raw
0-255 pixels.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from keras_resnet.errors import ConfigError

if TYPE_CHECKING:
    import keras

FORMATS = ("saved_model", "onnx")


def default_output(model_path: Path, format: str) -> Path:
    """Beside the model: ``NAME_saved_model/`` (a folder) or ``NAME.onnx``."""
    suffix = ".onnx" if format == "onnx" else f"_{format}"
    return model_path.with_name(model_path.stem + suffix)


def export(
    model: keras.Model, output: str | Path, format: str = "saved_model", overwrite: bool = False
) -> Path:
    """Write ``model`` to ``output`` in ``format``; return ``output``.

    The SavedModel is a folder whose ``serving_default`` signature (also its ``serve`` method)
    maps a float32 ``(batch, height, width, channels)`` tensor named ``image`` to the model's
    outputs. The ONNX file takes the same tensor as its input ``image``, with a dynamic batch.
    """
    if format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "onnx" and importlib.util.find_spec("jax2onnx") is None:
        raise ConfigError("format", "onnx needs jax2onnx: pip install -r requirements-onnx.txt")
    output = Path(output)
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise ConfigError(
            "output",
            f"{str(output)!r} already exists; choose another path, or overwrite it (--overwrite)",
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError("output", f"{str(output)!r} cannot be written: {reason}") from error
    try:
        written = scratch / "export"
        if format == "onnx":
            import keras

            # An explicit signature: Keras otherwise refuses a model loaded but never called.
            image = keras.InputSpec(shape=tuple(model.input.shape), dtype="float32", name="image")
            model.export(str(written), format="onnx", verbose=False, input_signature=[image])
        else:
            import_tensorflow()
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
