"""Atomic file writes: a crash mid-write leaves the previous file, never half of a new one."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

# tempfile's random names: eight of these characters.
RANDOM_PART = "[a-z0-9_]" * 8


def temporary_glob(path: str | os.PathLike) -> str:
    """The glob pattern of the temporary files ``atomic_path`` makes for ``path``, so that a
    later start can find the ones a killed process left behind, and only those: a user's own
    ``.config-old.json`` does not match."""
    path = Path(path)
    return f".{path.stem}-{RANDOM_PART}{path.suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The file is flushed to disk before the rename and the folder after it, so that a power cut
    leaves the old file or the new one, and it gets the mode a plain ``open`` would give it
    (mkstemp makes files readable by their owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere reading it means setting it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_atomically(path: str | os.PathLike, save: Callable[[Path], object]) -> None:
    """Run ``save(tmp_path)`` (e.g. ``model.save``) and move the result into place."""
    with atomic_path(path) as tmp:
        save(tmp)


def save_model(model: keras.Model, path: str | os.PathLike, write: bool = True) -> None:
    """Save ``model`` to ``path`` atomically; with ``write`` false, take part without writing.

    In a multi-host run saving gathers arrays that live on every host, so every process must
    call it at the same point; only the first process keeps the file.
    """
    with _tensorflow_unasked():
        if write:
            save_atomically(path, model.save)
            return
        with tempfile.TemporaryDirectory() as scratch:
            model.save(Path(scratch) / Path(path).name)


@contextlib.contextmanager
def _tensorflow_unasked() -> Iterator[None]:
    """Let Keras's serializer take TensorFlow as absent while it is not imported.

    The serializer asks whether TensorFlow is installed, which imports it (3.5 s on a CPU
    machine), only to test whether a value is a TensorFlow shape, dtype or type spec; no such
    value can exist in a process that has not imported TensorFlow, so the answer is the same.
    """
    from keras.src.utils.module_utils import tensorflow

    if "tensorflow" in sys.modules or vars(tensorflow).get("_available", True) is not None:
        yield
        return
    tensorflow._available = False
    try:
        yield
    finally:
        tensorflow._available = None
