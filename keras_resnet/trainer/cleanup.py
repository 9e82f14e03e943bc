"""What killed and replaced runs leave in a run folder, and how it goes.

Every write is to a temporary name renamed into place, and an old run is moved aside before it
is deleted, so a kill at any moment leaves files that no run reads: they are removed on the
next start, under the lock. Only entries under a run's names are touched; ``resume`` has
checked (``RunFolder.refuse_foreign``) that they are ours.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from keras_resnet.trainer import io
from keras_resnet.trainer.run_folder import (
    CHECKPOINTS,
    RUN_FILES,
    RUN_FOLDERS,
    TRASH,
    WRITE_TEST,
    RunFolder,
    relative,
)


def replace_run(run: RunFolder) -> None:
    """Move the earlier run's files aside, state.json first (then nothing of it looks
    resumable), and delete them: a new run's curves must not join the old one's."""
    trash = None
    for name in (*RUN_FILES, *RUN_FOLDERS):
        path = run.path / name
        if os.path.lexists(path):
            with run.writing(path):
                trash = trash or Path(tempfile.mkdtemp(prefix=TRASH, dir=run.path))
                path.rename(trash / name)
    if trash:
        print(f"Replacing the run in {run.path}.")
    remove_leftovers(run, keep=None)


def remove_leftovers(run: RunFolder, keep: str | None) -> None:
    """Delete what killed runs leave: temporary files, the folders of a replaced run, and
    checkpoints other than ``keep``, the one ``state.json`` names (a kill between naming the
    new one and deleting the old one leaves it). Only called under the lock."""
    if not run.write:
        return
    folder = run.path / CHECKPOINTS
    leftovers = [
        *run.path.glob(WRITE_TEST + io.RANDOM_PART),
        *(p for p in run.path.glob(TRASH + io.RANDOM_PART) if _is_trash(p)),
    ]
    for name in RUN_FILES:
        leftovers += run.path.glob(io.temporary_glob(name))
    if folder.is_dir():
        leftovers += folder.glob(io.temporary_glob("epoch-*.keras"))
        leftovers += [p for p in run.checkpoints() if relative(p) != keep]
    for path in leftovers:
        with run.writing(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _is_trash(path: Path) -> bool:
    """Whether ``path`` is a folder ``replace_run`` moved an old run's files into (and nothing
    else)."""
    names = (*RUN_FILES, *RUN_FOLDERS)
    return (
        path.is_dir()
        and not path.is_symlink()
        and all(entry.name in names for entry in path.iterdir())
    )
