"""``--tensorboard``: each epoch's scalars and a few training images in RUN/tensorboard/."""

import csv
import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util.tensor_util import make_ndarray

from keras_resnet import cli
from keras_resnet.errors import ConfigError
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.fit import load_data
from keras_resnet.trainer.run_folder import RunFolder

# Keras's TensorBoard callback imports TensorFlow (3 s): these tests share the worker that
# tests/test_export.py's do.
pytestmark = pytest.mark.xdist_group("tensorflow")


def _events(folder) -> event_accumulator.EventAccumulator:
    events = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    return events


def _scalars(events, tag) -> dict[int, float]:
    return {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def test_tensorboard_logs_each_epochs_scalars_and_training_images(tmp_path, capsys):
    run = tmp_path / "run"
    argv = "--model tiny_resnet6 --synthetic --train-size 256 --batch-size 64 --epochs 2 --lr 0.05"
    code = cli.main(["train", *argv.split(), "--output-dir", str(run), "--tensorboard"])
    assert code == 0, capsys.readouterr().err
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))

    train = _events(run / "tensorboard" / "train")
    for tag, column in [
        ("epoch_loss", "loss"),
        ("epoch_accuracy", "accuracy"),
        ("epoch_learning_rate", "learning_rate"),
    ]:
        logged = _scalars(train, tag)
        assert sorted(logged) == [0, 1]
        expected = [float(row[column]) for row in history]
        np.testing.assert_allclose([logged[0], logged[1]], expected, rtol=1e-5)
    assert list(_scalars(train, "epoch_learning_rate").values()) == pytest.approx([0.05, 0.05])

    validation = _events(run / "tensorboard" / "validation")
    for tag, column in [("epoch_loss", "val_loss"), ("epoch_accuracy", "val_accuracy")]:
        logged = _scalars(validation, tag)
        expected = [float(row[column]) for row in history]
        np.testing.assert_allclose([logged[0], logged[1]], expected, rtol=1e-5)

    config = RunFolder(run).read_config()
    training_images = load_data(config).train.images
    shown = {}
    for event in train.Tensors("training_images"):
        width, height, *pngs = make_ndarray(event.tensor_proto)
        assert (int(width), int(height), len(pngs)) == (32, 32, 8)
        shown[event.step] = [np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
    assert sorted(shown) == [0, 1]
    for image in shown[0] + shown[1]:
        assert (training_images == image).all(axis=(1, 2, 3)).any()  # one of the training set's
    assert not np.array_equal(shown[0], shown[1])  # each epoch's own shuffled batch


def test_tensorboard_is_off_by_default_and_must_be_a_bool():
    assert TrainConfig().tensorboard is False
    with pytest.raises(ConfigError, match="tensorboard must be True or False, got 'yes'"):
        TrainConfig(tensorboard="yes")
