"""Helpers several test files share: the CLI in-process, and Python in a fresh process."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keras_resnet import cli, pretrained

ROOT = Path(__file__).resolve().parent.parent
# Files too large or not ours to commit, beside the checkout where a machine has them.
SHARED = ROOT.parent / "shared"
PUBLISHED = SHARED / "pretrained"  # akamaster's CIFAR-10 checkpoints, byte for byte


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
