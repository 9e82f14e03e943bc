"""Exporting: a SavedModel that TensorFlow serves as Keras predicts, written whole or not at all."""

from pathlib import Path

import numpy as np
import pytest
from helpers import cache_published_weights, run_cli
from keras import layers

from keras_resnet import RandomCropFlip, build
from keras_resnet.errors import ConfigError
from keras_resnet.export import export

# Exporting and serving import TensorFlow (3 s): its tests run on one worker, which imports it
# when the first of them runs, not when collecting.
pytestmark = pytest.mark.xdist_group("tensorflow")

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture
def trained_like(tmp_path):
    """A ``.keras`` file laid out as ``train.py`` saves one: augmentation and normalisation
    inside, BatchNorm statistics away from their initial values, an augmentation step > 0."""
    model = build(
        "resnet8",
        input_normalization=(MEAN, STD),
        augmentation=RandomCropFlip(4, cutout=8, seed=3, name="augment"),
    )
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            (c,) = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
    model.get_layer("augment").step.assign(7)
    path = tmp_path / "model.keras"
    model.save(path)
    return model, path


def test_the_saved_model_serves_raw_pixels_as_keras_predicts(capsys, trained_like):
    model, path = trained_like
    code, out, err = run_cli(capsys, "export", str(path))
    output = path.with_name("model_saved_model")
    assert code == 0, err
    assert f"wrote {output}" in out and "raw 0-255 pixels" in out

    import tensorflow as tf

    served = tf.saved_model.load(str(output))
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("float32")
    (logits,) = served.signatures["serving_default"](image=tf.constant(pixels)).values()
    expected = np.asarray(model(pixels, training=False))
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(served.serve(pixels).numpy(), expected, rtol=1e-5, atol=1e-5)
    # The augmentation was inactive: a flipped image gets other logits.
    flipped = served.serve(pixels[:, :, ::-1].copy()).numpy()
    assert np.abs(flipped - expected).max() > 1e-3


def test_the_onnx_file_serves_raw_pixels_as_keras_predicts(capsys, trained_like):
    import onnxruntime

    model, path = trained_like
    code, out, err = run_cli(capsys, "export", str(path), "--format", "onnx")
    output = path.with_name("model.onnx")
    assert code == 0, err
    assert f"wrote {output}" in out

    session = onnxruntime.InferenceSession(str(output))
    (image,) = session.get_inputs()
    assert image.name == "image" and image.shape[1:] == [32, 32, 3]
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype("float32")
    (logits,) = session.run(None, {"image": pixels})
    expected = np.asarray(model(pixels, training=False))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_an_existing_output_is_kept_unless_overwrite_is_given(capsys, trained_like, tmp_path):
    _, path = trained_like
    output = tmp_path / "served"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")

    code, out, err = run_cli(capsys, "export", str(path), "--output", str(output))
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: --output {str(output)!r} already exists; choose another path, "
        "or overwrite it (--overwrite)"
    )
    assert (output / "mine.txt").read_text() == "keep me"

    code, _, err = run_cli(capsys, "export", str(path), "--output", str(output), "--overwrite")
    assert code == 0, err
    assert not (output / "mine.txt").exists()
    assert (output / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "served"]


def test_a_bad_model_file_ends_export_with_one_line_and_writes_nothing(capsys, tmp_path):
    bad = tmp_path / "BAD.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code, out, err = run_cli(capsys, "export", str(bad))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(bad) in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["BAD.keras"]


class _FailingModel:
    """Writes part of an export, then fails, as a crash or a full disk would."""

    def export(self, path, format, verbose):
        (Path(path) / "variables").mkdir(parents=True)
        (Path(path) / "saved_model.pb").write_bytes(b"half")
        raise OSError("No space left on device")


def test_a_failed_export_leaves_no_output_and_no_scratch(tmp_path):
    with pytest.raises(OSError, match="No space left"):
        export(_FailingModel(), tmp_path / "served")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="format must be one of saved_model, onnx, got 'tflite'"):
        export(_FailingModel(), tmp_path / "served", format="tflite")
    assert list(tmp_path.iterdir()) == []


def test_published_weights_export_by_name_into_the_working_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache_published_weights(tmp_path / "keras")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "export", "resnet20:cifar10")
    assert code == 0, err
    assert "wrote resnet20-cifar10_saved_model" in out and "raw 0-255 pixels" in out
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "resnet20-cifar10_saved_model"))
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    expected = build("resnet20", weights="cifar10").predict(pixels, verbose=0)
    np.testing.assert_allclose(served.serve(pixels).numpy(), expected, rtol=1e-4, atol=1e-4)
