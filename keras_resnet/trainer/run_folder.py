"""The run folder: every file a training run reads or writes is named here and nowhere else.

A run lives in one folder. ``config.json`` records what was run; ``state.json`` and
``checkpoints/`` let the same command continue from the last finished epoch; the final model,
metrics and figures are written when training ends. Every file is written to a temporary name
and renamed into place, so a crash leaves the previous version, never half of a new one; the
temporary files a killed process leaves are removed on the next start. One trainer at a time
holds the folder's lock. A write that fails (a full disk, a folder in a file's place) ends the
run with one ``RunFolderError`` naming the path, and loses nothing already saved.

Only what a run wrote is ever replaced or deleted. A run is known by its ``config.json``, which
says it was written by keras_resnet; a folder holding anything else under a run's names (a
user's own ``config.json`` or ``model.keras``, a symbolic link, a folder where a file goes) is
refused before anything in it is touched, with or without ``--overwrite``, so ``--output-dir .``
in a project of one's own is safe. No link is followed out of the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import numbers
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np

from keras_resnet.callbacks import ResumableReduceLROnPlateau, TorchReduceLROnPlateau
from keras_resnet.errors import ConfigError, DivergedError, RunFolderError
from keras_resnet.saving import load_model
from keras_resnet.trainer import io, reports
from keras_resnet.trainer.config import RESUMABLE_CHANGES, TrainConfig

CONFIG = "config.json"
STATE = "state.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
MODEL = "model.keras"
BEST = "best.keras"
CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
CHECKPOINT = re.compile(rf"{CHECKPOINTS}/epoch-(\d{{4,}})\.keras")  # as state.json names one
LOCK = ".lock"
WRITE_TEST = ".write-test-"  # prefix of the empty file that shows the folder is writable
TRASH = ".replaced-"  # prefix of the folder an old run's files are moved into before deletion
# The files of one run, state.json first: once it is gone the rest no longer looks resumable.
RUN_FILES = (STATE, CONFIG, METRICS, HISTORY, MODEL, BEST, CURVES, CONFUSION)
RUN_FOLDERS = (CHECKPOINTS, TENSORBOARD)
# What a run has written before its first state.json (besides epoch 1's checkpoint): without
# state.json, nothing else of it is worth keeping.
STARTED = (CONFIG, TENSORBOARD, BEST)
# config.json's mark: only a folder whose config.json carries it is a run of ours.
WRITTEN_BY = ("written_by", "keras_resnet")
TENSORBOARD_EVENTS = "events.out.tfevents.*"
# The counters each plateau rule saves in state.json, by schedule.
PLATEAU_STATES = {
    "plateau": ResumableReduceLROnPlateau.STATE_KEYS,
    "torch_plateau": TorchReduceLROnPlateau.STATE_KEYS,
}
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINTS}/epoch-{epoch:04d}.keras"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return _is_number(value) and math.isfinite(value)


def _is_history_row(row) -> bool:
    return (
        isinstance(row, dict)
        and _is_int(row.get("epoch"))
        and set(row) <= set(HISTORY_COLUMNS)
        and all(_is_finite(value) for value in row.values())
    )


def _is_plateau_state(value) -> bool:
    # Either plateau rule's counters, exactly: ``best`` a number (it starts at an infinity,
    # which json writes and reads back, so only NaN is refused), the others counts.
    return (
        isinstance(value, dict)
        and any(set(value) == set(keys) for keys in PLATEAU_STATES.values())
        and _is_number(value["best"])
        and not math.isnan(value["best"])
        and all(_is_int(v) and v >= 0 for k, v in value.items() if k != "best")
    )


# What each field of state.json must hold; ``to_json`` writes every one.
STATE_SCHEMA: dict[str, tuple[str, Callable[[object], bool]]] = {
    "epochs_done": ("a whole number >= 0", lambda v: _is_int(v) and v >= 0),
    "checkpoint": (
        f"a file {CHECKPOINTS}/epoch-NNNN.keras",
        lambda v: isinstance(v, str) and CHECKPOINT.fullmatch(v) is not None,
    ),
    "learning_rate": (
        "a positive number or null",
        lambda v: v is None or (_is_finite(v) and v > 0),
    ),
    "plateau": (
        "null or the counters of a plateau rule",
        lambda v: v is None or _is_plateau_state(v),
    ),
    "history": (
        "a list of epoch rows",
        lambda v: isinstance(v, list) and all(_is_history_row(row) for row in v),
    ),
    "best": ("a number or null", lambda v: v is None or _is_finite(v)),
    "best_epoch": ("a whole number or null", lambda v: v is None or (_is_int(v) and v >= 1)),
    "seconds": ("a number >= 0", lambda v: _is_finite(v) and v >= 0),
    "finished": ("true or false", lambda v: isinstance(v, bool)),
}


def recovery(folder: Path) -> str:
    """How to get going again when a run folder's own files are damaged."""
    saved = sorted((folder / CHECKPOINTS).glob("epoch-*.keras"))
    if not saved:
        return "Start over with --overwrite"
    return (
        f"Start over with --overwrite, or take the last saved epoch from {saved[-1]} "
        "(model and optimizer; keras_resnet.load_model reads it)"
    )


@dataclasses.dataclass
class ResumeState:
    """What a restart needs besides the checkpointed model: ``state.json``'s contents."""

    epochs_done: int = 0
    checkpoint: str | None = None  # relative to the run folder
    learning_rate: float | None = None
    plateau: dict | None = None
    history: list[dict] = dataclasses.field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    seconds: float = 0.0
    finished: bool = False

    @classmethod
    def from_json(cls, data: dict, path: Path) -> ResumeState:
        """Check all of ``data`` against ``STATE_SCHEMA``; a mismatch names the file, the
        field and how to recover. The checkpoint must lie in the run's ``checkpoints/``."""

        def damaged(field: str, reason: str) -> RunFolderError:
            return RunFolderError(
                f"{path} is damaged (field {field!r} {reason}). {recovery(path.parent)}."
            )

        for field in dataclasses.fields(cls):
            expected, valid = STATE_SCHEMA[field.name]
            if field.name not in data:
                raise damaged(field.name, "is missing")
            if not valid(data[field.name]):
                raise damaged(field.name, f"must be {expected}, got {data[field.name]!r}")
        unknown = sorted(set(data) - set(STATE_SCHEMA))
        if unknown:
            raise damaged(unknown[0], "is not part of a run's state")
        state = cls(**data)
        if len(state.history) != state.epochs_done:
            raise damaged(
                "history", f"has {len(state.history)} rows for {state.epochs_done} epochs"
            )
        if CHECKPOINT.fullmatch(state.checkpoint).group(1) != f"{state.epochs_done:04d}":
            raise damaged("checkpoint", f"is not the checkpoint of epoch {state.epochs_done}")
        if state.best_epoch is not None and state.best_epoch > state.epochs_done:
            raise damaged("best_epoch", f"is {state.best_epoch}, after the last finished epoch")
        return state

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class RunFolder:
    """One run's folder. With ``write`` false (the other processes of a multi-host run) it
    reads and takes part in collective saves, but writes nothing."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path = Path(path)
        self.write = write

    def __str__(self) -> str:
        return str(self.path)

    # Paths a user is told about.
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
    def _writing(self, path: Path) -> Iterator[None]:
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

    # The configuration.
    def read_config(self) -> TrainConfig:
        """The settings the run was started with, checked as strictly as new ones."""
        path = self.path / CONFIG
        data = _read_json(path)
        data.pop(WRITTEN_BY[0], None)
        try:
            return TrainConfig.from_json(data)
        except (TypeError, ConfigError) as error:
            raise RunFolderError(f"{path} is damaged ({error}). {recovery(self.path)}.") from error

    def _is_ours(self) -> bool:
        """Whether ``config.json`` was written by a run: it carries our mark, or (written before
        the mark) holds nothing but settings of a run."""
        try:
            data = _read_json(self.path / CONFIG)
        except RunFolderError:
            return False
        key, value = WRITTEN_BY
        if key in data:
            return data[key] == value
        settings = {f.name for f in dataclasses.fields(TrainConfig)}
        return {"model", "epochs", "batch_size", "lr"} <= set(data) <= settings

    def _refuse_foreign(self) -> None:
        """Refuse the folder, before anything in it is read or touched, when it holds entries
        under a run's names that no run of ours wrote, naming them."""
        present = [
            name for name in (*RUN_FILES, *RUN_FOLDERS) if os.path.lexists(self.path / name)
        ]
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

    # Starting and resuming.
    def read_state(self) -> ResumeState | None:
        path = self.path / STATE
        return ResumeState.from_json(_read_json(path), path) if path.exists() else None

    def resume_state(self, config: TrainConfig, overwrite: bool) -> ResumeState | None:
        """The state to continue ``config`` from, None for a fresh run, or a RunFolderError
        when neither is safe. This is the one check of whether a run may be continued.

        ``overwrite`` replaces a finished run, a run of other settings or a damaged one; an
        unfinished run of the same settings is continued, so that the same command, run again
        after a crash, goes on where it stopped (also with ``--overwrite``).
        """
        self._refuse_foreign()
        try:
            state = self.read_state()
            changed = self.read_config().changed_settings(config) if state else {}
            if state and state.plateau and set(state.plateau) != set(
                PLATEAU_STATES.get(config.schedule, ())
            ):
                raise RunFolderError(
                    f"{self.path / STATE} is damaged (field 'plateau' holds the counters of "
                    f"another schedule than {config.schedule}). {recovery(self.path)}."
                )
        except RunFolderError:
            if overwrite:
                return None
            raise
        if state is None:
            # A kill while epoch 1 is saved may leave its checkpoint and best.keras, no more.
            lost = [n for n in RUN_FILES if n not in STARTED and (self.path / n).exists()]
            lost += [
                _relative(p) for p in self._checkpoints() if _relative(p) != checkpoint_name(1)
            ]
            if lost and not overwrite:
                raise RunFolderError(
                    f"{self.path} holds a run whose {STATE} is missing ({', '.join(lost)}), "
                    "so it cannot be continued. Use --overwrite to replace it, or another "
                    "--output-dir."
                )
            return None
        finished = state.finished and state.epochs_done >= config.epochs
        if overwrite and (changed or state.finished):
            return None
        if changed:
            diffs = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise RunFolderError(
                f"{self.path} holds a run with other settings ({diffs}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change when a run continues. "
                "Use another --output-dir, or --overwrite to replace it."
            )
        if finished:
            raise RunFolderError(
                f"{self.path} already holds a finished {state.epochs_done}-epoch run. Use another "
                "--output-dir, --overwrite to replace it, or a larger --epochs to train it further."
            )
        self._remove_leftovers(keep=state.checkpoint)
        return state

    def start(self, config: TrainConfig) -> None:
        """Begin a fresh run of ``config`` where ``resume_state`` found none to continue: the
        earlier run's files (all ours: it checked) go first, state.json first, so that nothing
        of it can be mistaken for this run's; then config.json, with our mark."""
        if not self.write:
            return
        trash = None
        for name in (*RUN_FILES, *RUN_FOLDERS):  # a new run's curves must not join the old's
            path = self.path / name
            if os.path.lexists(path):
                with self._writing(path):
                    trash = trash or Path(tempfile.mkdtemp(prefix=TRASH, dir=self.path))
                    path.rename(trash / name)
        if trash:
            print(f"Replacing the run in {self.path}.")
        self._remove_leftovers(keep=None)
        with self._writing(self.path / CONFIG):
            io.write_json(self.path / CONFIG, dict([WRITTEN_BY]) | config.to_json())

    def _checkpoints(self) -> list[Path]:
        """The saved epochs in ``checkpoints/`` (not the temporary files)."""
        folder = self.path / CHECKPOINTS
        if not folder.is_dir():
            return []
        return [p for p in folder.glob("epoch-*.keras") if CHECKPOINT.fullmatch(_relative(p))]

    def _remove_leftovers(self, keep: str | None) -> None:
        """Delete what killed runs leave: temporary files, the folders of a replaced run, and
        checkpoints older than the one ``state.json`` names (a kill between naming the new
        one and deleting the old one leaves it). Only called under the lock."""
        if not self.write:
            return
        folder = self.path / CHECKPOINTS
        leftovers = [
            *self.path.glob(WRITE_TEST + io.RANDOM_PART),
            *(p for p in self.path.glob(TRASH + io.RANDOM_PART) if _is_trash(p)),
        ]
        for name in RUN_FILES:
            leftovers += self.path.glob(io.temporary_glob(name))
        if folder.is_dir():
            leftovers += folder.glob(io.temporary_glob("epoch-*.keras"))
            leftovers += [p for p in self._checkpoints() if _relative(p) != keep]
        for path in leftovers:
            with self._writing(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def load_checkpoint(self, state: ResumeState, expected: keras.Model) -> keras.Model:
        """The checkpoint ``state`` names (a file of this run's ``checkpoints/``, which
        ``resume_state`` checked holds no link out), refused unless it holds ``expected``'s
        architecture."""
        path = self.path / state.checkpoint
        model = load_model(path)
        shapes = [tuple(w.shape) for w in model.weights]
        if model.name != expected.name or shapes != [tuple(w.shape) for w in expected.weights]:
            raise RunFolderError(
                f"{path} holds a {model.name} with {len(shapes)} weights, but "
                f"{self.path / CONFIG} is a {expected.name} run with {len(expected.weights)}; "
                f"refusing to resume it. {recovery(self.path)}."
            )
        return model

    def is_finished(self, epochs: int) -> bool:
        """Whether a finished run of at least ``epochs`` epochs is here (experiments reuse it)."""
        try:
            state = self.read_state()
        except RunFolderError:
            return False
        return state is not None and state.finished and state.epochs_done >= epochs

    def kept(self) -> str:
        """What a stopped run leaves on disk, read from the disk: the sentence ends the
        message of a run that cannot go on."""
        try:
            state = self.read_state()
        except RunFolderError:
            state = None
        if state is None:
            return f"No epoch had finished, so no model was saved in {self.path}."
        kept = f"The checkpoint of epoch {state.epochs_done} ({self.path / state.checkpoint})"
        if not self.best_path.is_file():
            return f"{kept} is kept."
        return f"{kept} and {self.best_path} (epoch {state.best_epoch}) are kept."

    def _check_finite(self, model: keras.Model, epoch: int) -> None:
        """Refuse to save a model whose weights (or optimizer state) hold a NaN or infinity:
        the loss can stay finite while they diverge, and such a file is no result."""
        variables = [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
        for variable in variables:
            values = np.asarray(keras.ops.convert_to_numpy(variable))
            if np.issubdtype(values.dtype, np.inexact) and not np.isfinite(values).all():
                raise DivergedError(
                    f"The weights became NaN or infinite in epoch {epoch} ({variable.path}); "
                    f"nothing of that epoch is saved. {self.kept()} Try a lower --lr with "
                    "--overwrite or another --output-dir."
                )

    # After each epoch.
    def save_epoch(self, model: keras.Model, state: ResumeState, improved: bool) -> None:
        """Checkpoint the finished epoch that ``state`` now describes.

        The model (with optimizer state) goes to ``checkpoints/epoch-NNNN.keras``; only then
        does ``state.json`` name it, so a crash at any point leaves a consistent pair.
        """
        self._check_finite(model, state.epochs_done)
        previous = state.checkpoint
        state.checkpoint = checkpoint_name(state.epochs_done)
        if improved:
            self._save(model, self.best_path)
        self._save(model, self.path / state.checkpoint)
        if not self.write:
            return
        with self._writing(self.path / STATE):  # names the new checkpoint last
            io.write_json(self.path / STATE, state.to_json())
        self._write_history(state.history)
        if previous and previous != state.checkpoint and CHECKPOINT.fullmatch(previous):
            with self._writing(self.path / previous):
                (self.path / previous).unlink(missing_ok=True)

    def _save(self, model: keras.Model, path: Path) -> None:
        with self._writing(path):
            io.save_model(model, path, self.write)

    def _write_history(self, history: list[dict]) -> None:
        lines = [",".join(HISTORY_COLUMNS)]
        for row in history:
            lines.append(
                ",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in HISTORY_COLUMNS)
            )
        with self._writing(self.path / HISTORY):
            io.write_text(self.path / HISTORY, "\n".join(lines) + "\n")

    # When training ends.
    def save_model(self, model: keras.Model, epoch: int) -> None:
        self._check_finite(model, epoch)
        self._save(model, self.model_path)

    def finish(self, state: ResumeState, metrics: dict, class_names, eval_name: str) -> None:
        """Write the metrics, the history (again: a resumed run may have failed to) and the
        figures; mark the run finished."""
        if not self.write:
            return
        self._write_history(state.history)
        with self._writing(self.path / METRICS):
            io.write_json(self.path / METRICS, metrics)
        synthetic = metrics.get("data") == "synthetic"
        with self._writing(self.path / CURVES):
            reports.plot_curves(state.history, self.path / CURVES, eval_name, synthetic)
        with self._writing(self.path / CONFUSION):
            reports.plot_confusion_matrix(
                np.asarray(metrics["confusion_matrix"]),
                class_names,
                self.path / CONFUSION,
                synthetic=synthetic,
            )
        state.finished = True
        with self._writing(self.path / STATE):
            io.write_json(self.path / STATE, state.to_json())

    # What experiments read back.
    def history(self) -> list[dict]:
        state = self.read_state()
        return state.history if state else []

    def test_accuracy(self) -> float:
        return float(_read_json(self.path / METRICS)["test_accuracy"])


def evaluation_paths(model_path: Path, output_dir: Path | None) -> tuple[Path, Path]:
    """Where ``evaluate MODEL.keras`` writes its metrics and confusion matrix: named after the
    model, so evaluating a run's ``best.keras`` never overwrites the run's own metrics."""
    folder = output_dir or model_path.parent
    return (
        folder / f"{model_path.stem}-evaluation.json",
        folder / f"{model_path.stem}-confusion_matrix.png",
    )


def _relative(checkpoint: Path) -> str:
    """A checkpoint's name as state.json gives it."""
    return f"{CHECKPOINTS}/{checkpoint.name}"


def _is_checkpoint_file(path: Path) -> bool:
    return CHECKPOINT.fullmatch(_relative(path)) is not None or path.match(
        io.temporary_glob("epoch-*.keras")
    )


def _is_trash(path: Path) -> bool:
    """Whether ``path`` is a folder ``start`` moved an old run's files into (and nothing else)."""
    names = (*RUN_FILES, *RUN_FOLDERS)
    return (
        path.is_dir()
        and not path.is_symlink()
        and all(entry.name in names for entry in path.iterdir())
    )


def _read_json(path: Path) -> dict:
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
