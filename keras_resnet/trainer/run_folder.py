"""The run folder: every file a training run reads or writes is named here and nowhere else.

A run lives in one folder. ``config.json`` records what was run; ``state.json`` and
``checkpoints/`` let the same command continue from the last finished epoch; the final model,
metrics and figures are written when training ends. Every file is written to a temporary name
and renamed into place, so a crash leaves the previous version, never half of a new one; the
temporary files a killed process leaves are removed on the next start. The one file filled in
place, ``decoded-images.npy`` (a streamed image folder's images, decoded once: ``data.cache``),
is made so too, and a row of it is used only when its key vouches for it. One trainer at a time
holds the folder's lock. A write that fails (a full disk, a folder in a file's place) ends the
run with one ``RunFolderError`` naming the path, and loses nothing already saved.

Only what a run wrote is ever replaced or deleted. A run is known by its ``config.json``, which
says it was written by keras_resnet; a folder holding anything else under a run's names (a
user's own ``config.json`` or ``model.keras``, a symbolic link, a folder where a file goes) is
refused before anything in it is touched, with or without ``--overwrite``, so ``--output-dir .``
in a project of one's own is safe. No link is followed out of the folder.

This module names the files and owns the folder: its lock, whose files are there, and the
writes. What a start does with what it finds is ``resume``; what killed or replaced runs leave
behind goes in ``cleanup``; ``state.json``'s contents are ``state``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from keras_resnet.errors import ConfigError, RunFolderError
from keras_resnet.trainer import io, reports
from keras_resnet.trainer.config import TrainConfig

if TYPE_CHECKING:
    from keras_resnet.trainer.state import ResumeState

CONFIG = "config.json"
STATE = "state.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
MODEL = "model.keras"
BEST = "best.keras"
CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
CHECKPOINTS = "checkpoints"
DECODED = "decoded-images.npy"  # a streamed folder's images, decoded once (data.cache)
TENSORBOARD = "tensorboard"
CHECKPOINT = re.compile(rf"{CHECKPOINTS}/epoch-(\d{{4,}})\.keras")  # as state.json names one
LOCK = ".lock"
WRITE_TEST = ".write-test-"  # prefix of the empty file that shows the folder is writable
TRASH = ".replaced-"  # prefix of the folder an old run's files are moved into before deletion
# The files of one run, state.json first: once it is gone the rest no longer looks resumable.
RUN_FILES = (STATE, CONFIG, METRICS, HISTORY, MODEL, BEST, CURVES, CONFUSION, DECODED)
RUN_FOLDERS = (CHECKPOINTS, TENSORBOARD)
# What a run has written before its first state.json (besides epoch 1's checkpoint): without
# state.json, nothing else of it is worth keeping.
STARTED = (CONFIG, TENSORBOARD, BEST, DECODED)
# config.json's mark: only a folder whose config.json carries it is a run of ours.
WRITTEN_BY = ("written_by", "keras_resnet")
TENSORBOARD_EVENTS = "events.out.tfevents.*"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINTS}/epoch-{epoch:04d}.keras"


def recovery(folder: Path) -> str:
    """How to get going again when a run folder's own files are damaged."""
    saved = sorted((folder / CHECKPOINTS).glob("epoch-*.keras"))
    if not saved:
        return "Start over with --overwrite"
    return (
        f"Start over with --overwrite, or take the last saved epoch from {saved[-1]} "
        "(model and optimizer; keras_resnet.load_model reads it)"
    )


class RunFolder:
    """One run's folder. With ``write`` false (the other processes of a multi-host run) it
    reads and takes part in collective saves, but writes nothing."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path = Path(path)
        self.write = write

    def __str__(self) -> str:
        return str(self.path)

    # Paths a user is told about, and the figures' (drawn by ``reports.plot_run``).
    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def best_path(self) -> Path:
        return self.path / BEST

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard's log folder (``--tensorboard``): ``train/`` and ``validation/`` runs."""
        return self.path / TENSORBOARD

    @property
    def curves_path(self) -> Path:
        return self.path / CURVES

    @property
    def confusion_path(self) -> Path:
        return self.path / CONFUSION

    @property
    def decoded_path(self) -> Path:
        """Where a streamed folder's decoded images are kept (``data.cache``)."""
        return self.path / DECODED

    def checkpoints(self) -> list[Path]:
        """The saved epochs in ``checkpoints/`` (not the temporary files)."""
        folder = self.path / CHECKPOINTS
        if not folder.is_dir():
            return []
        return [p for p in folder.glob("epoch-*.keras") if CHECKPOINT.fullmatch(relative(p))]

    # The lock.
    def check_writable(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=WRITE_TEST, dir=self.path)
            os.close(fd)
            os.unlink(probe)
        except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
            reason = getattr(error, "strerror", None) or str(error)
            raise RunFolderError(
                f"output folder {str(self.path)!r} is not writable: {reason}"
            ) from error

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for a whole run, so that a second trainer started on it is
        refused instead of mixing its files with ours. The lock goes with the process, however
        it ends, and its file when the run ends; a run refused before it wrote anything leaves
        no folder either. Only the writing process locks: the others of a multi-host run only
        read."""
        if not self.write:
            yield
            return
        created = not self.path.exists()
        self.check_writable()
        try:
            fd = self._take_lock()
            try:
                yield
            finally:
                self._release_lock(fd)
        finally:
            if created:
                with contextlib.suppress(OSError):  # not empty: the run wrote something
                    self.path.rmdir()

    def _take_lock(self) -> int:
        """Lock ``.lock`` (never through a symbolic link, never a file of someone else's) and
        write our process id into it; retried when the holder removed it as we opened it."""
        path = self.path / LOCK
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except OSError as error:
                why = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
                raise RunFolderError(
                    f"cannot use {path} as the run's lock: {why}. Remove it, or use another "
                    "--output-dir"
                ) from None
            holder = os.pread(fd, 64, 0)
            if not stat.S_ISREG(os.fstat(fd).st_mode) or not re.fullmatch(rb"\d*\n?", holder):
                os.close(fd)
                raise RunFolderError(
                    f"{path} is not a lock file of keras_resnet (it holds something else); "
                    "refusing to replace it. Move it away, or use another --output-dir"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunFolderError(
                    f"{self.path} is in use by another training run (process "
                    f"{holder.decode().strip() or 'unknown'}); wait for it to end, or use "
                    "another --output-dir"
                ) from None
            if self._is_lock(fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)
        raise RunFolderError(f"could not lock {path}: other processes keep replacing it")

    def _is_lock(self, fd: int) -> bool:
        """Whether ``fd`` is still the file named ``.lock`` (its holder may have removed it)."""
        try:
            return os.path.samestat(os.fstat(fd), os.lstat(self.path / LOCK))
        except FileNotFoundError:
            return False

    def _release_lock(self, fd: int) -> None:
        # Removed while still locked, so that no other trainer can lock a file being removed.
        try:
            if self._is_lock(fd):
                os.unlink(self.path / LOCK)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Turn a failed write of ``path`` into one line naming it and the cause. Writes are
        atomic, so the previous version of the file (and every other) is still in place."""
        try:
            yield
        except OSError as error:
            if path.is_dir():
                cause = "a folder is in its place"
            elif path.parent.exists() and not path.parent.is_dir():
                cause = f"{path.parent} is a file, not a folder"
            else:
                cause = error.strerror or str(error)
            raise RunFolderError(
                f"cannot write {path}: {cause}. Nothing saved before is lost; remove the cause "
                "and run the same command again to continue from the last saved epoch"
            ) from error

    # The configuration, and whose files are here.
    def read_config(self) -> TrainConfig:
        """The settings the run was started with, checked as strictly as new ones."""
        path = self.path / CONFIG
        data = read_json(path)
        data.pop(WRITTEN_BY[0], None)
        try:
            return TrainConfig.from_json(data)
        except (TypeError, ConfigError) as error:
            raise RunFolderError(f"{path} is damaged ({error}). {recovery(self.path)}.") from error

    def write_config(self, config: TrainConfig) -> None:
        """Write ``config.json`` with our mark: from now on the folder's files are a run's."""
        with self.writing(self.path / CONFIG):
            io.write_json(self.path / CONFIG, dict([WRITTEN_BY]) | config.to_json())

    def _is_ours(self) -> bool:
        """Whether ``config.json`` was written by a run: it carries our mark, or (written before
        the mark) holds nothing but settings of a run."""
        try:
            data = read_json(self.path / CONFIG)
        except RunFolderError:
            return False
        key, value = WRITTEN_BY
        if key in data:
            return data[key] == value
        settings = {f.name for f in dataclasses.fields(TrainConfig)}
        return {"model", "epochs", "batch_size", "lr"} <= set(data) <= settings

    def refuse_foreign(self) -> None:
        """Refuse the folder, before anything in it is read or touched, when it holds entries
        under a run's names that no run of ours wrote, naming them."""
        present = [name for name in (*RUN_FILES, *RUN_FOLDERS) if os.path.lexists(self.path / name)]
        if not present:
            return
        if self._is_ours():
            foreign, reason = [f"{n} ({why})" for n in present if (why := self._not_ours(n))], ""
        else:
            foreign, reason = present, f" (it has no {CONFIG} of a keras_resnet run)"
        if foreign:
            raise RunFolderError(
                f"{self.path} holds files that no keras_resnet run wrote{reason}: "
                f"{', '.join(foreign)}. Refusing to replace them, with or without --overwrite: "
                "move them away, or use another --output-dir"
            )

    def _not_ours(self, name: str) -> str | None:
        """Why the entry ``name`` of a run of ours cannot be its own, or None."""
        path = self.path / name
        if path.is_symlink():
            return "a symbolic link"
        if name not in RUN_FOLDERS:
            return None if path.is_file() else "not a regular file"
        if not path.is_dir():
            return "not a folder"
        for folder, subfolders, files in os.walk(path):
            inside = Path(folder)
            for entry in [*subfolders, *files]:
                if (inside / entry).is_symlink():
                    return f"it holds the symbolic link {entry}"
            if name == CHECKPOINTS:
                if subfolders or not all(_is_checkpoint_file(inside / f) for f in files):
                    return "it holds files that are not checkpoints"
                break
            if not all(Path(f).match(TENSORBOARD_EVENTS) for f in files):
                return "it holds files that are not TensorBoard logs"
        return None

    # After each epoch.
    def save_epoch(self, model: keras.Model, state: ResumeState, improved: bool) -> None:
        """Checkpoint the finished epoch that ``state`` now describes.

        The model (with optimizer state) goes to ``checkpoints/epoch-NNNN.keras``; only then
        does ``state.json`` name it, so a crash at any point leaves a consistent pair.
        """
        previous = state.checkpoint
        state.checkpoint = checkpoint_name(state.epochs_done)
        if improved:
            self._save(model, self.best_path)
        self._save(model, self.path / state.checkpoint)
        if not self.write:
            return
        with self.writing(self.path / STATE):  # names the new checkpoint last
            io.write_json(self.path / STATE, state.to_json())
        self._write_history(state.history)
        if previous and previous != state.checkpoint and CHECKPOINT.fullmatch(previous):
            with self.writing(self.path / previous):
                (self.path / previous).unlink(missing_ok=True)

    def _save(self, model: keras.Model, path: Path) -> None:
        with self.writing(path):
            io.save_model(model, path, self.write)

    def _write_history(self, history: list[dict]) -> None:
        lines = [",".join(HISTORY_COLUMNS)]
        for row in history:
            lines.append(
                ",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in HISTORY_COLUMNS)
            )
        with self.writing(self.path / HISTORY):
            io.write_text(self.path / HISTORY, "\n".join(lines) + "\n")

    # When training ends.
    def save_model(self, model: keras.Model) -> None:
        self._save(model, self.model_path)

    def finish(
        self, state: ResumeState, metrics: dict, class_names: Sequence[str], eval_name: str
    ) -> None:
        """Write the metrics, the history (again: a resumed run may have failed to) and the
        figures; mark the run finished."""
        if not self.write:
            return
        self._write_history(state.history)
        with self.writing(self.path / METRICS):
            io.write_json(self.path / METRICS, metrics)
        reports.plot_run(self, state.history, metrics, class_names, eval_name)
        state.finished = True
        with self.writing(self.path / STATE):
            io.write_json(self.path / STATE, state.to_json())

    # What experiments read back.
    def test_accuracy(self) -> float:
        return float(read_json(self.path / METRICS)["test_accuracy"])


def evaluation_paths(model_path: Path, output_dir: Path | None) -> tuple[Path, Path]:
    """Where ``evaluate MODEL.keras`` writes its metrics and confusion matrix: named after the
    model, so evaluating a run's ``best.keras`` never overwrites the run's own metrics."""
    folder = output_dir or model_path.parent
    return (
        folder / f"{model_path.stem}-evaluation.json",
        folder / f"{model_path.stem}-confusion_matrix.png",
    )


def relative(checkpoint: Path) -> str:
    """A checkpoint's name as state.json gives it."""
    return f"{CHECKPOINTS}/{checkpoint.name}"


def _is_checkpoint_file(path: Path) -> bool:
    return CHECKPOINT.fullmatch(relative(path)) is not None or path.match(
        io.temporary_glob("epoch-*.keras")
    )


def read_json(path: Path) -> dict:
    """A run folder's JSON file, or a RunFolderError naming it when it is missing or damaged."""
    try:
        data = json.loads(path.read_text())
    except RecursionError:
        raise RunFolderError(
            f"{path} is damaged (nested too deeply to read). {recovery(path.parent)}."
        ) from None
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}. {recovery(path.parent)}.") from error
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is damaged (not a JSON object). {recovery(path.parent)}.")
    return data
