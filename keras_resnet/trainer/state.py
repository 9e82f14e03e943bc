"""``state.json``: what a restart needs besides the checkpointed model, checked field by field
when it is read, so that a damaged file is named instead of resuming from nonsense."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from keras_resnet.callbacks import ResumableReduceLROnPlateau, TorchReduceLROnPlateau
from keras_resnet.checks import is_int, is_number
from keras_resnet.errors import RunFolderError
from keras_resnet.trainer.run_folder import (
    CHECKPOINT,
    CHECKPOINTS,
    HISTORY_COLUMNS,
    STATE,
    RunFolder,
    read_json,
    recovery,
)

# The counters each plateau rule saves in state.json, by schedule.
PLATEAU_STATES = {
    "plateau": ResumableReduceLROnPlateau.STATE_KEYS,
    "torch_plateau": TorchReduceLROnPlateau.STATE_KEYS,
}


def _is_history_row(row) -> bool:
    return (
        isinstance(row, dict)
        and is_int(row.get("epoch"))
        and set(row) <= set(HISTORY_COLUMNS)
        and all(is_number(value) for value in row.values())
    )


def _is_plateau_state(value) -> bool:
    # Either plateau rule's counters, exactly: ``best`` a number (it starts at an infinity,
    # which json writes and reads back, so only NaN is refused), the others counts.
    return (
        isinstance(value, dict)
        and any(set(value) == set(keys) for keys in PLATEAU_STATES.values())
        and is_number(value["best"], finite=False)  # a rule's first best is infinite
        and not math.isnan(value["best"])
        and all(is_int(v) and v >= 0 for k, v in value.items() if k != "best")
    )


# What each field of state.json must hold; ``to_json`` writes every one.
STATE_SCHEMA: dict[str, tuple[str, Callable[[object], bool]]] = {
    "epochs_done": ("a whole number >= 0", lambda v: is_int(v) and v >= 0),
    "checkpoint": (
        f"a file {CHECKPOINTS}/epoch-NNNN.keras",
        lambda v: isinstance(v, str) and CHECKPOINT.fullmatch(v) is not None,
    ),
    "learning_rate": (
        "a positive number or null",
        lambda v: v is None or (is_number(v) and v > 0),
    ),
    "plateau": (
        "null or the counters of a plateau rule",
        lambda v: v is None or _is_plateau_state(v),
    ),
    "history": (
        "a list of epoch rows",
        lambda v: isinstance(v, list) and all(_is_history_row(row) for row in v),
    ),
    "best": ("a number or null", lambda v: v is None or is_number(v)),
    "best_epoch": ("a whole number or null", lambda v: v is None or (is_int(v) and v >= 1)),
    "seconds": ("a number >= 0", lambda v: is_number(v) and v >= 0),
    "finished": ("true or false", lambda v: isinstance(v, bool)),
}


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


def read_state(run: RunFolder) -> ResumeState | None:
    """The run's state, None when it has none yet, or a RunFolderError naming the damage."""
    path = run.path / STATE
    return ResumeState.from_json(read_json(path), path) if path.exists() else None


def kept(run: RunFolder) -> str:
    """What a stopped run leaves on disk, read from the disk: the sentence ends the message of
    a run that cannot go on."""
    try:
        state = read_state(run)
    except RunFolderError:
        state = None
    if state is None:
        return f"No epoch had finished, so no model was saved in {run.path}."
    saved = f"The checkpoint of epoch {state.epochs_done} ({run.path / state.checkpoint})"
    if not run.best_path.is_file():
        return f"{saved} is kept."
    return f"{saved} and {run.best_path} (epoch {state.best_epoch}) are kept."
