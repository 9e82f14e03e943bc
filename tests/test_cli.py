"""The command line's own surface: --version, the help texts, the installed command, and
NAME:WEIGHTS, published weights wherever a command takes a model file."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED, cache_published_weights, run_cli
from PIL import Image

import keras_resnet
from keras_resnet import cli, models, pretrained
from keras_resnet.errors import ConfigError
from keras_resnet.trainer.config import NOTES, RECIPES, SCHEDULES, SETTINGS, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_IMAGES = SHARED / "data" / "cifar10-test-1000.npz"


@pytest.mark.parametrize("entry", [cli.main, cli.train_main], ids=["keras_resnet", "train.py"])
def test_version_prints_the_package_version(entry, capsys):
    with pytest.raises(SystemExit) as exit_info:
        entry(["--version"])
    assert exit_info.value.code == 0
    version = PYPROJECT["project"]["version"]
    assert keras_resnet.__version__ == version
    assert capsys.readouterr().out.strip() == f"keras-resnet {version}"


def test_train_help_shows_each_setting_as_declared(capsys):
    with pytest.raises(SystemExit):
        cli.train_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, field in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        assert f"{flag} " in help_text and field.metadata["help"] in help_text, name
    assert f"--schedule SCHEDULE {', '.join(SCHEDULES)} (default {NOTES['schedule']})" in help_text
    assert f"preset: {', '.join(RECIPES)}; flags override it (default note)" in help_text
    assert "--synthetic, --no-synthetic generated data: no download (default off)" in help_text
    assert "--train-size N train on the first N training images (default all)" in help_text


def test_a_setting_has_one_check_for_python_and_the_command_line(capsys):
    with pytest.raises(ConfigError, match=r"lr_factor must be between 0 and 1, got 1\.5"):
        TrainConfig(lr_factor=1.5)
    code, _, err = run_cli(capsys, "train", "--lr-factor", "1.5")
    assert (code, err) == (2, "error: --lr-factor must be between 0 and 1, got 1.5\n")
    code, _, err = run_cli(capsys, "evaluate", "m.keras", "--max-memory-gb", "0")
    assert (code, err) == (2, "error: --max-memory-gb must be a positive number, got 0.0\n")


def test_the_installed_command_runs_the_cli():
    module, _, function = PYPROJECT["project"]["scripts"]["keras-resnet"].partition(":")
    assert (module, function) == ("keras_resnet.cli", "console")
    assert getattr(cli, function) is cli.console


def test_list_marks_the_models_with_published_weights(capsys, monkeypatch):
    monkeypatch.setattr(models, "parameter_count", lambda name: 0)  # ResNet-1202's takes long
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and out.splitlines()[0].endswith("pretrained weights")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    for name in pretrained.WEIGHTS["cifar10"].checkpoints:
        assert rows[name].endswith(f"{name}:cifar10")
    assert ":" not in rows["resnet18"] and ":" not in rows["plain20"]


@pytest.mark.skipif(not TEST_IMAGES.is_file(), reason=f"{TEST_IMAGES} is absent")
def test_predict_classifies_an_image_with_published_weights_and_no_model_file(
    capsys, keras_home, tmp_path
):
    cache_published_weights(keras_home)
    data = np.load(TEST_IMAGES)
    assert data["labels"][0] == 3  # CIFAR-10's first test image is a cat
    Image.fromarray(data["images"][0]).save(tmp_path / "cat.png")
    code, out, err = run_cli(capsys, "predict", "resnet20:cifar10", str(tmp_path / "cat.png"))
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'cat.png'}: cat ") and not err


def test_evaluate_names_its_results_after_the_published_weights(capsys, keras_home, tmp_path):
    cache_published_weights(keras_home)
    out_dir = tmp_path / "eval"
    code, out, err = run_cli(
        capsys, "evaluate", "resnet20:cifar10", "--synthetic", "--output-dir", str(out_dir)
    )
    assert code == 0, err
    assert out.startswith("cifar10 test accuracy: ")
    metrics = json.loads((out_dir / "resnet20-cifar10-evaluation.json").read_text())
    assert metrics["model"] == "resnet20" and metrics["data"] == "synthetic"
    assert (out_dir / "resnet20-cifar10-confusion_matrix.png").is_file()


def test_a_model_without_those_weights_or_offline_without_the_file_ends_in_one_line(
    capsys, keras_home
):
    code, _, err = run_cli(capsys, "predict", "resnet18:cifar10", "cat.png")
    assert code == 1 and err.count("\n") == 1
    assert "'cifar10' is published for resnet20, resnet32" in err
    code, _, err = run_cli(capsys, "evaluate", "resnet56:cifar10", "--synthetic")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: cannot reach github.com:443 to download https://github.com/")
    assert err.strip().endswith(f"copy it to {keras_home / 'models' / 'resnet56-4bfd9763.th'}")
