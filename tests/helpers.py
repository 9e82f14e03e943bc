"""Helpers several test files share: the tiny test model's name and a Ctrl-C callback, the CLI
in-process, and Python in a fresh process."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from keras_resnet import cli, pretrained

ROOT = Path(__file__).resolve().parent.parent
# Files too large or not ours to commit, beside the checkout where a machine has them.
SHARED = ROOT.parent / "shared"
PUBLISHED = SHARED / "pretrained"  # akamaster's CIFAR-10 checkpoints, byte for byte
# A two-stage net small enough to train in seconds, registered by conftest.py (and by the
# scripts tests start); the recipe is the same as for resnet18.
TINY_MODEL = "tiny_resnet6"
TINY_SPEC = {"block": "basic", "depths": (1, 1), "widths": (8, 16)}


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C as training reaches ``epoch`` (every epoch when None): after its checkpoint, or
    (``batch``) as that batch begins or, with ``after_batch``, once it has run."""

    def __init__(self, epoch: int | None = None, batch: int | None = None, after_batch=False):
        super().__init__()
        self.epoch, self.batch, self.after_batch = epoch, batch, after_batch
        self.current = 0

    def _reached(self, epoch: int) -> bool:
        return self.epoch is None or epoch == self.epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.batch == batch and not self.after_batch and self._reached(self.current):
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.batch == batch and self.after_batch and self._reached(self.current):
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and self._reached(epoch):
            raise KeyboardInterrupt


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``python -m keras_resnet ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def run_python(
    code: str, *, env_updates=None, remove=(), cwd=None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a fresh process with this checkout first on its path."""
    env = {k: v for k, v in os.environ.items() if k not in remove}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(env_updates or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cache_published_weights(keras_home: Path) -> Path:
    """Point Keras's cache at ``keras_home`` (the caller sets KERAS_HOME) and copy in the
    published checkpoints from ``PUBLISHED``, as a user does for offline use; skip the test
    where they are absent. Returns the cache's ``models/`` folder."""
    if not PUBLISHED.is_dir():
        pytest.skip(f"{PUBLISHED} (the published CIFAR-10 checkpoints) is absent")
    models = keras_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    for checkpoint in pretrained.WEIGHTS["cifar10"].checkpoints.values():
        if (PUBLISHED / checkpoint.file).is_file():
            (models / checkpoint.file).symlink_to(PUBLISHED / checkpoint.file)
    return models
