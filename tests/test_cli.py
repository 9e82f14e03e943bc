"""The command line's own surface: --version, the help texts, the installed command."""

import tomllib
from pathlib import Path

import pytest

import keras_resnet
from keras_resnet import cli
from keras_resnet.trainer.config import NOTES, RECIPES, SCHEDULES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("entry", [cli.main, cli.train_main], ids=["keras_resnet", "train.py"])
def test_version_prints_the_package_version(entry, capsys):
    with pytest.raises(SystemExit) as exit_info:
        entry(["--version"])
    assert exit_info.value.code == 0
    version = PYPROJECT["project"]["version"]
    assert keras_resnet.__version__ == version
    assert capsys.readouterr().out.strip() == f"keras-resnet {version}"


def test_train_help_lists_every_schedule_and_recipe(capsys):
    with pytest.raises(SystemExit):
        cli.train_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--schedule SCHEDULE {', '.join(SCHEDULES)} (default {NOTES['schedule']})" in help_text
    assert f"preset: {', '.join(RECIPES)} (default note)" in help_text
    for flag in ("--warmup-lr WARMUP_LR", "--warmup-steps WARMUP_STEPS"):
        assert f"{flag} steps or triangular schedule: warm-up" in help_text


def test_the_installed_command_runs_the_cli():
    module, _, function = PYPROJECT["project"]["scripts"]["keras-resnet"].partition(":")
    assert (module, function) == ("keras_resnet.cli", "console")
    assert getattr(cli, function) is cli.console
