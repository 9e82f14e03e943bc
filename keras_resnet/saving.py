"""Reading ``.keras`` model files safely: any failure is one ``ModelFileError`` naming the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from keras_resnet.errors import ModelFileError


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` file in safe mode; any failure names the file in one line.

    Only the ``.keras`` zip format is read: it is what the trainer writes, and it holds data,
    not code, so safe mode can refuse the one way it carries code (Python lambdas).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{str(path)!r} is not a file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"cannot load model {str(path)!r}: not a .keras model file (a zip archive); "
            "it may be damaged, truncated or of another format"
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # a corrupt archive, a foreign layer, unsafe code: one clear line
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        if "safe_mode" in reason:  # Keras's safe mode refused a Python lambda
            raise ModelFileError(
                f"refused to load model {str(path)!r}: it contains Python code (a Lambda layer "
                "or lambda function), and running code from a model file is unsafe; load it with "
                "Keras's safe mode off only if you trust its source"
            ) from error
        raise ModelFileError(f"cannot load model {str(path)!r}: {reason}") from error
    if not isinstance(model, keras.Model):
        raise ModelFileError(
            f"cannot load model {str(path)!r}: it holds a {type(model).__name__}, not a model"
        )
    return model
