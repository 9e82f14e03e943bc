"""Reading ``.keras`` model files safely: any failure is one ``ModelFileError`` naming the file.

Commands also take ``NAME:WEIGHTS`` (``resnet56:cifar10``) where they take a model file: the
registered model with its published weights (``keras_resnet.pretrained``), no file needed.
Keras is imported only once the file is known to be there, so a mistyped path is refused at once.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from keras_resnet.errors import ConfigError, ModelFileError

PRETRAINED = re.compile(r"(\w+):(\w+)")  # NAME:WEIGHTS, e.g. resnet56:cifar10

if TYPE_CHECKING:
    import keras


def require_file(path: str | Path) -> Path:
    """``path``, unless it is not a regular file (missing, a folder, a pipe that would block)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{str(path)!r} is not a file")
    return path


def check_model_file(path: str | Path) -> Path:
    """``path`` if it is a regular file in the ``.keras`` (zip) format, else a ModelFileError."""
    path = require_file(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"cannot load model {str(path)!r}: not a .keras model file (a zip archive); "
            "it may be damaged, truncated or of another format"
        )
    return path


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` file in safe mode; any failure names the file in one line.

    Only the ``.keras`` zip format is read: it is what the trainer writes, and it holds data,
    not code, so safe mode can refuse the one way it carries code (Python lambdas).
    """
    path = check_model_file(path)
    import keras  # the package's layers register as it is imported (keras_resnet.registration)

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
        missing = re.search(r"Could not locate class '(\w+)'", reason)
        if missing:
            reason = _missing_class(path, missing.group(1)) or reason
        raise ModelFileError(f"cannot load model {str(path)!r}: {reason}") from error
    if not isinstance(model, keras.Model):
        raise ModelFileError(
            f"cannot load model {str(path)!r}: it holds a {type(model).__name__}, not a model"
        )
    return model


def parse_pretrained(source: str | Path) -> tuple[str, str] | None:
    """``(name, weights)`` when ``source`` is ``NAME:WEIGHTS`` and no such file exists."""
    match = PRETRAINED.fullmatch(str(source))
    return None if match is None or Path(source).exists() else (match[1], match[2])


def check_model_source(source: str | Path) -> None:
    """Refuse, before Keras is imported, a model file that cannot be one, or ``NAME:WEIGHTS``
    that names no published weights."""
    published = parse_pretrained(source)
    if published is None:
        check_model_file(source)
        return
    from keras_resnet import pretrained

    try:
        pretrained.published(*published)
    except ValueError as error:  # an unknown model, or weights it does not have
        raise ModelFileError(f"cannot load {str(source)!r}: {error}") from error


def init_source_reason(source) -> str | None:
    """Why a run cannot start from ``source`` (``--init-from``), which must be a ``.keras``
    model, a PyTorch checkpoint or ``NAME:WEIGHTS``; None when it can."""
    from keras_resnet import pretrained
    from keras_resnet.torch_reader import SUFFIXES

    if source is None:
        return None
    if not isinstance(source, str) or not (
        Path(source).suffix in (".keras", *SUFFIXES) or parse_pretrained(source)
    ):
        return (
            f"must be a .keras model, a PyTorch {'/'.join(SUFFIXES)} checkpoint or "
            f"NAME:WEIGHTS for published weights (resnet20:cifar10), got {source!r}"
        )
    if published := parse_pretrained(source):
        try:
            pretrained.published(*published)
        except ConfigError as error:
            return f"{source!r}: {error.reason}"
    return None


def open_model(source: str | Path) -> keras.Model:
    """The model a command names: a ``.keras`` file (``load_model``), or ``NAME:WEIGHTS``
    built with its published weights; any failure is one ``ModelFileError``."""
    pretrained = parse_pretrained(source)
    if pretrained is None:
        return load_model(source)
    from keras_resnet.models import build

    name, weights = pretrained
    try:
        return build(name, weights=weights)
    except ValueError as error:  # an unknown model, or weights it does not have
        raise ModelFileError(f"cannot load {str(source)!r}: {error}") from error


def output_stem(source: str | Path) -> Path:
    """What a command's outputs for the model ``source`` are named after: the file itself, or
    ``NAME-WEIGHTS.keras`` in the working folder for ``NAME:WEIGHTS``."""
    pretrained = parse_pretrained(source)
    return Path(source) if pretrained is None else Path("-".join(pretrained) + ".keras")


def _missing_class(path: Path, class_name: str) -> str | None:
    """Which package registers ``class_name`` in the file's config, to say what to import.

    Custom layers load only once their package has registered them with Keras; the file names
    the package in each object's ``registered_name`` (``package>Class``) or ``module``.
    """
    try:
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile):
        return None
    packages = set()
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == class_name:
                registered = str(item.get("registered_name") or "")
                module = str(item.get("module") or "")
                package = registered.partition(">")[0] if ">" in registered else module
                packages.add(package.partition(".")[0])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    # The file chooses these names: advise importing one only if it could be a package of
    # Keras layers, never a module of Python's own (``os``, ``subprocess``).
    plausible = sorted(p for p in packages if p.isidentifier() and p not in sys.stdlib_module_names)
    if not plausible:
        return f"it holds the class {class_name!r}, which no imported package registers with Keras"
    return (
        f"it holds the custom class {class_name!r}, which the file says is of the package "
        f"{' or '.join(plausible)} and which is not registered with Keras: if you trust the "
        f"file, `import {plausible[0]}` before loading it"
    )
