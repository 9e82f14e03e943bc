"""The run folder: every file a training run reads or writes is named here and nowhere else.

A run lives in one folder. ``config.json`` records what was run; ``state.json`` and
``checkpoints/`` let the same command continue from the last finished epoch; the final model,
metrics and figures are written when training ends. Every file is written to a temporary name
and renamed into place, so a crash leaves the previous version, never half of a new one; the
temporary files a killed process leaves are removed on the next start. One trainer at a time
holds the folder's lock. A write that fails (a full disk, a folder in a file's place) ends the
run with one ``RunFolderError`` naming the path, and loses nothing already saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np

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
WRITE_TEST = ".write-test"
TRASH = ".replaced-"  # prefix of the folder an old run's files are moved into before deletion
# The files of one run, state.json first: once it is gone the rest no longer looks resumable.
RUN_FILES = (STATE, CONFIG, METRICS, HISTORY, MODEL, BEST, CURVES, CONFUSION)
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
    # Either plateau rule's counters (Keras's {wait, best, cooldown_counter}, PyTorch's
    # {best, num_bad_epochs, cooldown_counter, last_epoch}): names to numbers. ``best`` starts
    # at an infinity, which json writes and reads back, so only NaN is refused.
    return isinstance(value, dict) and all(
        isinstance(k, str) and _is_number(v) and not math.isnan(v) for k, v in value.items()
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
    "plateau": ("null or an object of numbers", lambda v: v is None or _is_plateau_state(v)),
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
            io.write_text(self.path / WRITE_TEST, "")
            (self.path / WRITE_TEST).unlink()
        except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
            reason = getattr(error, "strerror", None) or str(error)
            raise RunFolderError(
                f"output folder {str(self.path)!r} is not writable: {reason}"
            ) from error

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for a whole run, so that a second trainer started on it is
        refused instead of mixing its files with ours. The lock goes with the process, however
        it ends. Only the writing process locks: the others of a multi-host run only read."""
        if not self.write:
            yield
            return
        self.check_writable()
        with open(self.path / LOCK, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "unknown"
                raise RunFolderError(
                    f"{self.path} is in use by another training run (process {holder}); wait "
                    "for it to end, or use another --output-dir"
                ) from None
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
        try:
            return TrainConfig.from_json(_read_json(path))
        except (TypeError, ConfigError) as error:
            raise RunFolderError(f"{path} is damaged ({error}). {recovery(self.path)}.") from error

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
        try:
            state = self.read_state()
            changed = self.read_config().changed_settings(config) if state else {}
        except RunFolderError:
            if overwrite:
                return None
            raise
        if state is None:
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
        """Begin a fresh run of ``config``: any earlier run's files go first, so that nothing
        of it (a state.json above all) can be mistaken for this run's, then config.json."""
        if not self.write:
            return
        trash = None
        for path in self._run_files():
            with self._writing(path):
                trash = trash or Path(tempfile.mkdtemp(prefix=TRASH, dir=self.path))
                path.rename(trash / path.name)
        if trash:
            print(f"Replacing the run in {self.path}.")
        self._remove_leftovers(keep=None)
        with self._writing(self.path / CONFIG):
            io.write_json(self.path / CONFIG, config.to_json())

    def _run_files(self) -> Iterator[Path]:
        """The files of a run here, state.json first; a checkpoints/ of someone else's files
        is left alone."""
        for name in RUN_FILES:
            if (self.path / name).exists():
                yield self.path / name
        folder = self.path / CHECKPOINTS
        if folder.is_dir() and all(_is_checkpoint_file(p) for p in folder.iterdir()):
            yield folder
        if (self.path / TENSORBOARD).is_dir():  # a new run's curves must not join the old's
            yield self.path / TENSORBOARD

    def _remove_leftovers(self, keep: str | None) -> None:
        """Delete what killed runs leave: temporary files, the folders of a replaced run, and
        checkpoints older than the one ``state.json`` names (a kill between naming the new
        one and deleting the old one leaves it). Only called under the lock."""
        if not self.write:
            return
        folder = self.path / CHECKPOINTS
        leftovers = [self.path / WRITE_TEST, *self.path.glob(f"{TRASH}*")]
        for name in RUN_FILES:
            leftovers += self.path.glob(io.temporary_glob(name))
        if folder.is_dir():
            leftovers += folder.glob(io.temporary_glob("epoch-*.keras"))
            leftovers += [
                p
                for p in folder.glob("epoch-*.keras")
                if CHECKPOINT.fullmatch(f"{CHECKPOINTS}/{p.name}")
                and f"{CHECKPOINTS}/{p.name}" != keep
            ]
        for path in leftovers:
            with self._writing(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def load_checkpoint(self, state: ResumeState, expected: keras.Model) -> keras.Model:
        """The checkpoint ``state`` names, refused unless it is a file inside this run's
        ``checkpoints/`` (no symlink out of it) holding ``expected``'s architecture."""
        path = self.path / state.checkpoint
        folder = self.path.resolve() / CHECKPOINTS
        if path.is_symlink() or path.resolve().parent != folder:
            raise RunFolderError(
                f"{path} (named in {self.path / STATE}) is not a file in {folder}; refusing to "
                f"use it. {recovery(self.path)}."
            )
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


def _is_checkpoint_file(path: Path) -> bool:
    name = f"{CHECKPOINTS}/{path.name}"
    return CHECKPOINT.fullmatch(name) is not None or path.match(io.temporary_glob("epoch-*.keras"))


def _read_json(path: Path) -> dict:
    """A run folder's JSON file, or a RunFolderError naming it when it is missing or damaged."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}. {recovery(path.parent)}.") from error
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is damaged (not a JSON object). {recovery(path.parent)}.")
    return data
