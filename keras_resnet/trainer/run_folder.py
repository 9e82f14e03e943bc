"""The run folder: every file a training run reads or writes is named here and nowhere else.

A run lives in one folder. ``config.json`` records what was run; ``state.json`` and
``checkpoints/`` let the same command continue from the last finished epoch; the final model,
metrics and figures are written when training ends. Every file is written to a temporary name
and renamed into place, so a crash leaves the previous version, never half of a new one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from keras_resnet.errors import ConfigError, RunFolderError
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
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
RECOVERY = "Start again with --overwrite"


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
        """Check ``data`` against the fields' types; a mismatch names the file and field."""

        def damaged(field: str) -> RunFolderError:
            return RunFolderError(
                f"{path} is damaged (field {field!r}: {data.get(field)!r}). {RECOVERY}."
            )

        if not isinstance(data.get("epochs_done"), int) or not isinstance(
            data.get("checkpoint"), str
        ):
            raise RunFolderError(
                f"{path} is damaged (no finished epoch and checkpoint named). {RECOVERY}."
            )
        state = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        if not isinstance(state.history, list):
            raise damaged("history")
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
            io.write_text(self.path / ".write-test", "")
            (self.path / ".write-test").unlink()
        except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
            reason = getattr(error, "strerror", None) or str(error)
            raise RunFolderError(
                f"output folder {str(self.path)!r} is not writable: {reason}"
            ) from error

    # The configuration.
    def read_config(self) -> TrainConfig:
        """The settings the run was started with, checked as strictly as new ones."""
        path = self.path / CONFIG
        try:
            return TrainConfig.from_json(_read_json(path))
        except (TypeError, ConfigError) as error:
            raise RunFolderError(f"{path} is damaged ({error}). {RECOVERY}.") from error

    def write_config(self, config: TrainConfig) -> None:
        if self.write:
            io.write_json(self.path / CONFIG, config.to_json())

    # Resuming.
    def read_state(self) -> ResumeState | None:
        path = self.path / STATE
        return ResumeState.from_json(_read_json(path), path) if path.exists() else None

    def resume_state(self, config: TrainConfig, overwrite: bool) -> ResumeState | None:
        """The state to continue ``config`` from, None for a fresh run, or a RunFolderError
        when neither is safe. This is the one check of whether a run may be continued."""
        state = None if overwrite else self.read_state()
        if state is None:
            return None
        changed = self.read_config().changed_settings(config)
        if changed:
            diffs = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise RunFolderError(
                f"{self.path} holds a run with other settings ({diffs}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change when a run continues. "
                "Use another --output-dir, or --overwrite to replace it."
            )
        if state.epochs_done >= config.epochs and state.finished:
            raise RunFolderError(
                f"{self.path} already holds a finished {state.epochs_done}-epoch run. Use another "
                "--output-dir, --overwrite to replace it, or a larger --epochs to train it further."
            )
        return state

    def load_checkpoint(self, state: ResumeState) -> keras.Model:
        return load_model(self.path / state.checkpoint)

    def is_finished(self, epochs: int) -> bool:
        """Whether a finished run of at least ``epochs`` epochs is here (experiments reuse it)."""
        try:
            state = self.read_state()
        except RunFolderError:
            return False
        return state is not None and state.finished and state.epochs_done >= epochs

    # After each epoch.
    def save_epoch(self, model: keras.Model, state: ResumeState, improved: bool) -> None:
        """Checkpoint the finished epoch that ``state`` now describes.

        The model (with optimizer state) goes to ``checkpoints/epoch-NNNN.keras``; only then
        does ``state.json`` name it, so a crash at any point leaves a consistent pair.
        """
        previous = state.checkpoint
        state.checkpoint = f"{CHECKPOINTS}/epoch-{state.epochs_done:04d}.keras"
        if improved:
            io.save_model(model, self.best_path, self.write)
        io.save_model(model, self.path / state.checkpoint, self.write)
        if not self.write:
            return
        io.write_json(self.path / STATE, state.to_json())  # names the new checkpoint last
        self._write_history(state.history)
        if previous and previous != state.checkpoint:
            (self.path / previous).unlink(missing_ok=True)

    def _write_history(self, history: list[dict]) -> None:
        lines = [",".join(HISTORY_COLUMNS)]
        for row in history:
            lines.append(
                ",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in HISTORY_COLUMNS)
            )
        io.write_text(self.path / HISTORY, "\n".join(lines) + "\n")

    # When training ends.
    def save_model(self, model: keras.Model) -> None:
        io.save_model(model, self.model_path, self.write)

    def finish(self, state: ResumeState, metrics: dict, class_names, eval_name: str) -> None:
        """Write the metrics and the figures; mark the run finished."""
        if not self.write:
            return
        io.write_json(self.path / METRICS, metrics)
        synthetic = metrics.get("data") == "synthetic"
        reports.plot_curves(state.history, self.path / CURVES, eval_name, synthetic)
        reports.plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            class_names,
            self.path / CONFUSION,
            synthetic=synthetic,
        )
        state.finished = True
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


def _read_json(path: Path) -> dict:
    """A run folder's JSON file, or a RunFolderError naming it when it is missing or damaged."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}. {RECOVERY}.") from error
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is damaged (not a JSON object). {RECOVERY}.")
    return data
