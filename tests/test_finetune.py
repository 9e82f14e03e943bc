"""--init-from and --freeze-backbone: start a run from trained weights, train only its head."""

import dataclasses
import json
import sys

import keras
import numpy as np
import pytest
from helpers import cache_published_weights

from keras_resnet import cli, models
from keras_resnet.errors import ConfigError, ModelFileError
from keras_resnet.saving import load_model
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.finetune import HEAD, freeze_backbone, initialise
from keras_resnet.trainer.fit import build_model, train


def config(tmp_path, **settings) -> TrainConfig:
    quick = {"model": "tiny_resnet6", "epochs": 1, "batch_size": 64, "train_size": 128}
    return TrainConfig(synthetic=True, output_dir=str(tmp_path / "run"), **(quick | settings))


def saved(model: keras.Model, path) -> str:
    """``model`` with every weight moved off its initialisation, saved to ``path``."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if weight.dtype.startswith("float"):
            weight.assign(np.abs(rng.normal(size=weight.shape)).astype(weight.dtype) + 0.1)
    model.save(path)
    return str(path)


def backbone(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Every learned layer's weights but the head's, BN moving statistics included."""
    return {
        layer.name: [np.array(w) for w in layer.weights]
        for layer in model.layers
        if layer.name not in (HEAD, "augment", "normalize") and layer.weights
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_a_keras_model_of_the_same_architecture_loads_every_layer(tmp_path):
    source = build_model(config(tmp_path), 2)
    path = saved(source, tmp_path / "source.keras")
    model = build_model(config(tmp_path, init_from=path), 2)
    report = initialise(model, path)
    assert HEAD in report.loaded and not (report.reinitialised or report.not_in_source)
    assert_same(backbone(model), backbone(source))
    np.testing.assert_array_equal(model.get_layer(HEAD).kernel, source.get_layer(HEAD).kernel)
    assert str(report).startswith(f"Initialised from {path}: loaded 5 layers.")


def test_the_head_starts_afresh_for_another_number_of_classes(tmp_path):
    source = models.build("tiny_resnet6", num_classes=5)
    path = saved(source, tmp_path / "five.keras")
    model = build_model(config(tmp_path), 2)
    head = np.array(model.get_layer(HEAD).kernel)
    report = initialise(model, path)
    assert report.reinitialised == (HEAD,)
    assert "re-initialised (another number of classes): predictions" in str(report)
    np.testing.assert_array_equal(model.get_layer(HEAD).kernel, head)
    assert_same(backbone(model), backbone(source))


def test_a_model_of_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    path = saved(models.build("resnet8"), tmp_path / "resnet8.keras")
    with pytest.raises(ModelFileError, match=r"another architecture \(shapes differ: stem_conv"):
        initialise(build_model(config(tmp_path), 2), path)
    argv = ["--model", "tiny_resnet6", "--synthetic", "--train-size", "128", "--epochs", "1"]
    run = tmp_path / "refused"
    with pytest.raises(SystemExit) as exit:
        cli.train_main([*argv, "--output-dir", str(run), "--init-from", path])
    assert exit.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: cannot start tiny_resnet6 from") and "\n" not in error
    assert not (run / "config.json").exists()


def test_bad_settings_name_the_flag(capsys):
    with pytest.raises(ConfigError, match=r"init_from must be a \.keras model, a PyTorch"):
        TrainConfig(init_from="weights.h5")
    with pytest.raises(ConfigError, match="freeze_backbone needs init_from"):
        TrainConfig(freeze_backbone=True)
    with pytest.raises(SystemExit) as exit:
        cli.train_main(["--freeze-backbone"])
    assert exit.value.code == 2
    assert "error: --freeze-backbone needs init_from" in capsys.readouterr().err


def test_freezing_trains_only_the_head_with_batchnorm_in_inference_mode(tmp_path):
    source_path = saved(build_model(config(tmp_path), 2), tmp_path / "source.keras")
    source = load_model(source_path)
    settings = config(tmp_path, init_from=source_path, freeze_backbone=True)
    run = train(settings, verbose=0)
    tuned = load_model(run / "model.keras")
    # Weight decay (5e-4) and BN's moving statistics would both have moved a frozen weight.
    assert_same(backbone(tuned), backbone(source))
    assert not np.allclose(tuned.get_layer(HEAD).kernel, source.get_layer(HEAD).kernel)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["init_from"] == source_path and recorded["freeze_backbone"] is True


def test_freeze_backbone_leaves_only_the_head_trainable_also_when_read_back(tmp_path):
    model = models.build("tiny_resnet6")
    freeze_backbone(model)
    assert {id(w) for w in model.trainable_weights} == {
        id(w) for w in model.get_layer(HEAD).trainable_weights
    }
    model.save(tmp_path / "frozen.keras")  # a resumed run continues from such a file
    again = load_model(tmp_path / "frozen.keras")
    assert [w.path for w in again.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    block = model.get_layer("stage1_block0")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 8)).astype("float32")
    np.testing.assert_allclose(block(x, training=True), block(x, training=False), atol=1e-6)


def test_a_run_starts_from_published_weights_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache_published_weights(tmp_path / "keras")
    settings = config(tmp_path, model="resnet20", init_from="resnet20:cifar10")
    settings = dataclasses.replace(settings, normalization="imagenet")
    model = build_model(settings, 2)
    report = initialise(model, "resnet20:cifar10")
    assert HEAD in report.loaded and not (report.reinitialised or report.not_in_source)
    assert str(report).startswith("Initialised from resnet20:cifar10: loaded 12 layers.")
    assert_same(backbone(model), backbone(models.build("resnet20", weights="cifar10")))
    normalize = model.get_layer("normalize")  # the run's own, matching the published weights'
    np.testing.assert_allclose(np.ravel(normalize.mean), [123.675, 116.28, 103.53], rtol=1e-6)


def test_published_weights_a_model_lacks_end_the_run_in_one_line(tmp_path, capsys):
    run = tmp_path / "refused"
    with pytest.raises(SystemExit) as exit:
        cli.train_main(["--init-from", "resnet18:cifar10", "--output-dir", str(run)])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --init-from 'resnet18:cifar10': 'cifar10' is published for")
    assert error.count("\n") == 1 and not run.exists()


torch = pytest.importorskip("torch")


def akamaster_checkpoint(path, num_classes: int, wide: int = 16) -> dict:
    """A ResNet-8 checkpoint as akamaster/pytorch_resnet_cifar10 saves them: the state_dict of
    an nn.DataParallel model under 'state_dict', beside the epoch and best accuracy."""
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.rand(*shape, generator=generator) + 0.5

    def norm(name: str, channels: int) -> dict:
        parts = ("weight", "bias", "running_mean", "running_var")
        return {f"{name}.{part}": random(channels) for part in parts} | {
            f"{name}.num_batches_tracked": torch.tensor(0)
        }

    state = {"conv1.weight": random(wide, 3, 3, 3), **norm("bn1", wide)}
    cin = wide
    for stage, planes in enumerate((wide, 2 * wide, 4 * wide), start=1):
        state[f"layer{stage}.0.conv1.weight"] = random(planes, cin, 3, 3)
        state[f"layer{stage}.0.conv2.weight"] = random(planes, planes, 3, 3)
        state |= norm(f"layer{stage}.0.bn1", planes) | norm(f"layer{stage}.0.bn2", planes)
        cin = planes
    state |= {"linear.weight": random(num_classes, cin), "linear.bias": random(num_classes)}
    state = {f"module.{key}": value for key, value in state.items()}
    torch.save({"state_dict": state, "epoch": 180, "best_prec1": 92.1}, path)
    return state


def test_an_akamaster_checkpoint_loads_with_a_new_head(tmp_path):
    path = tmp_path / "resnet8.th.pth"
    state = akamaster_checkpoint(path, num_classes=100)
    model = build_model(config(tmp_path, model="resnet8"), 2)
    report = initialise(model, str(path))
    assert report.unit == "PyTorch tensors" and len(report.loaded) == 5 + 3 * 10
    assert report.reinitialised == ("module.linear.bias", "module.linear.weight")
    expected = state["module.conv1.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel, expected)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "wide.pt"
    akamaster_checkpoint(path, num_classes=10, wide=8)
    model = build_model(config(tmp_path, model="resnet8"), 2)
    with pytest.raises(
        ModelFileError,
        match=r"another architecture \(shapes differ: module\.bn1\.bias; .*; and 32 more\)$",
    ):
        initialise(model, str(path))
    (tmp_path / "notes.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"cannot read PyTorch checkpoint .*notes\.pth"):
        initialise(model, str(tmp_path / "notes.pth"))


def test_a_pytorch_checkpoint_loads_where_torch_cannot_be_imported(tmp_path, monkeypatch):
    path = tmp_path / "resnet8.th"
    state = akamaster_checkpoint(path, num_classes=10)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    model = models.build("resnet8")
    report = initialise(model, str(path))
    assert report.unit == "PyTorch tensors" and not report.reinitialised
    np.testing.assert_array_equal(
        model.get_layer("predictions").bias, state["module.linear.bias"].numpy()
    )
