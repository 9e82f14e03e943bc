"""What a start does with what its run folder holds: continue it, start afresh, or refuse.

The same command, run again after a crash, goes on where it stopped (also with
``--overwrite``). ``--overwrite`` replaces a finished run, a run of other settings or a damaged
one; without it they are refused, naming why. Nothing is touched before the folder's entries
are known to be a run's own (``RunFolder.refuse_foreign``).
"""

from __future__ import annotations

import keras

from keras_resnet.errors import RunFolderError
from keras_resnet.saving import load_model
from keras_resnet.trainer import cleanup
from keras_resnet.trainer.config import RESUMABLE_CHANGES, TrainConfig
from keras_resnet.trainer.run_folder import (
    CONFIG,
    RUN_FILES,
    STARTED,
    STATE,
    RunFolder,
    checkpoint_name,
    recovery,
    relative,
)
from keras_resnet.trainer.state import PLATEAU_STATES, ResumeState, read_state


def resume_state(run: RunFolder, config: TrainConfig, overwrite: bool) -> ResumeState | None:
    """The state to continue ``config`` from, None for a fresh run, or a RunFolderError when
    neither is safe. This is the one check of whether a run may be continued."""
    run.refuse_foreign()
    try:
        state = read_state(run)
        changed = run.read_config().changed_settings(config) if state else {}
        if state:
            _check_plateau_counters(run, state, config)
    except RunFolderError:
        if overwrite:
            return None
        raise
    if state is None:
        _check_nothing_lost(run, overwrite)
        return None
    if overwrite and (changed or state.finished):
        return None
    _refuse_changed(run, changed)
    _refuse_finished(run, state, config)
    cleanup.remove_leftovers(run, keep=state.checkpoint)
    return state


def start(run: RunFolder, config: TrainConfig) -> None:
    """Begin a fresh run of ``config`` where ``resume_state`` found none to continue: the
    earlier run's files (all ours: it checked) go first, so that nothing of it can be mistaken
    for this run's; then config.json."""
    if not run.write:
        return
    cleanup.replace_run(run)
    run.write_config(config)


def load_checkpoint(run: RunFolder, state: ResumeState, expected: keras.Model) -> keras.Model:
    """The checkpoint ``state`` names (a file of this run's ``checkpoints/``, which
    ``resume_state`` checked holds no link out), refused unless it holds ``expected``'s
    architecture."""
    path = run.path / state.checkpoint
    model = load_model(path)
    shapes = [tuple(w.shape) for w in model.weights]
    if model.name != expected.name or shapes != [tuple(w.shape) for w in expected.weights]:
        raise RunFolderError(
            f"{path} holds a {model.name} with {len(shapes)} weights, but "
            f"{run.path / CONFIG} is a {expected.name} run with {len(expected.weights)}; "
            f"refusing to resume it. {recovery(run.path)}."
        )
    return model


def is_finished(run: RunFolder, epochs: int) -> bool:
    """Whether a finished run of at least ``epochs`` epochs is here (experiments reuse it)."""
    try:
        state = read_state(run)
    except RunFolderError:
        return False
    return state is not None and state.finished and state.epochs_done >= epochs


def _check_plateau_counters(run: RunFolder, state: ResumeState, config: TrainConfig) -> None:
    """The saved plateau counters must be those of ``config``'s schedule."""
    if state.plateau and set(state.plateau) != set(PLATEAU_STATES.get(config.schedule, ())):
        raise RunFolderError(
            f"{run.path / STATE} is damaged (field 'plateau' holds the counters of "
            f"another schedule than {config.schedule}). {recovery(run.path)}."
        )


def _check_nothing_lost(run: RunFolder, overwrite: bool) -> None:
    """Without state.json a run may start again only if it had written no more than a kill
    while epoch 1 is saved leaves (its checkpoint and best.keras); more means a lost state."""
    lost = [n for n in RUN_FILES if n not in STARTED and (run.path / n).exists()]
    lost += [relative(p) for p in run.checkpoints() if relative(p) != checkpoint_name(1)]
    if lost and not overwrite:
        raise RunFolderError(
            f"{run.path} holds a run whose {STATE} is missing ({', '.join(lost)}), "
            "so it cannot be continued. Use --overwrite to replace it, or another "
            "--output-dir."
        )


def _refuse_changed(run: RunFolder, changed: dict) -> None:
    if changed:
        diffs = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise RunFolderError(
            f"{run.path} holds a run with other settings ({diffs}); only "
            f"{', '.join(sorted(RESUMABLE_CHANGES))} may change when a run continues. "
            "Use another --output-dir, or --overwrite to replace it."
        )


def _refuse_finished(run: RunFolder, state: ResumeState, config: TrainConfig) -> None:
    if state.finished and state.epochs_done >= config.epochs:
        raise RunFolderError(
            f"{run.path} already holds a finished {state.epochs_done}-epoch run. Use another "
            "--output-dir, --overwrite to replace it, or a larger --epochs to train it further."
        )
