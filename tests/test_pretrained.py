"""Published weights: build(name, weights="cifar10") from Keras's cache, checked by hash, scoring
on real CIFAR-10 images; offline without the file, one line saying where to put it."""

import hashlib
import os
import shutil
import socket
import threading
import time

import keras
import numpy as np
import pytest
from helpers import PUBLISHED, SHARED, cache_published_weights

import keras_resnet
from keras_resnet import pretrained, saving
from keras_resnet.errors import ConfigError, DataUnavailableError, ModelFileError
from keras_resnet.models import class_names_of, dataset_of

TEST_IMAGES = SHARED / "data" / "cifar10-test-1000.npz"
needs_checkpoints = pytest.mark.skipif(
    not PUBLISHED.is_dir(), reason=f"{PUBLISHED} (the published checkpoints) is absent"
)
# Accuracy (%) on the first 1,000 CIFAR-10 test images, as measured here (docs/pretrained.md).
MEASURED = {"resnet20": 91.5, "resnet32": 92.8, "resnet44": 93.3, "resnet56": 92.6}
CIFAR10 = pretrained.WEIGHTS["cifar10"]


@pytest.fixture
def cache(keras_home):
    """The Keras cache holding the published checkpoints, as a user copies them there."""
    return cache_published_weights(keras_home)


def test_the_table_names_each_file_with_its_url_and_hash():
    assert set(CIFAR10.checkpoints) == {f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)}
    checkpoint = CIFAR10.checkpoints["resnet56"]
    assert checkpoint.url == (
        "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
        "resnet56-4bfd9763.th"
    )
    assert checkpoint.sha256_prefix == "4bfd9763"
    assert pretrained.weights_of("resnet56") == ["cifar10"] and not pretrained.weights_of("plain20")


@needs_checkpoints
@pytest.mark.parametrize("name", CIFAR10.checkpoints)
def test_the_published_files_hash_as_their_names_say(name):
    checkpoint = CIFAR10.checkpoints[name]
    path = PUBLISHED / checkpoint.file
    if not path.is_file():
        pytest.skip(f"{path} is absent (only some published files are copied there)")
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(checkpoint.sha256_prefix)


@pytest.mark.skipif(not TEST_IMAGES.is_file(), reason=f"{TEST_IMAGES} is absent")
@pytest.mark.parametrize(  # the default run scores one; -m slow the other three
    "name",
    [
        name if name == "resnet20" else pytest.param(name, marks=pytest.mark.slow)
        for name in MEASURED
    ],
)
def test_published_weights_score_as_measured_on_real_cifar10_images(cache, name):
    model = keras_resnet.build(name, weights="cifar10")
    data = np.load(TEST_IMAGES)
    logits = model.predict(data["images"].astype("float32"), batch_size=1000, verbose=0)
    accuracy = 100 * np.mean(logits.argmax(axis=-1) == data["labels"])
    assert abs(accuracy - MEASURED[name]) <= 1.5, f"{name}: {accuracy:.1f}%"
    # Raw 0-255 pixels in, logits out, CIFAR-10's class names inside.
    assert isinstance(model.get_layer("normalize"), keras.layers.Normalization)
    assert not np.allclose(logits.sum(axis=-1), 1.0)
    assert class_names_of(model) == CIFAR10.class_names and dataset_of(model) == "cifar10"


def test_a_model_without_published_weights_or_unknown_weights_are_refused():
    with pytest.raises(ConfigError, match=r"'cifar10' is published for resnet20, .*'resnet18'"):
        keras_resnet.build("resnet18", weights="cifar10")
    with pytest.raises(ConfigError, match=r"got 'imagenet'") as refused:
        keras_resnet.build("resnet20", weights="imagenet")
    assert refused.value.parameter == "weights" and "resnet56" in str(refused.value)
    with pytest.raises(ModelFileError, match="is not a file"):
        keras_resnet.build("resnet20", weights="missing.weights.h5")


def test_offline_without_the_file_one_line_names_the_url_and_the_cache_path(keras_home):
    started = time.monotonic()
    with pytest.raises(DataUnavailableError) as missing:
        keras_resnet.build("resnet56", weights="cifar10")
    assert time.monotonic() - started < 5
    message = str(missing.value)
    assert "\n" not in message
    assert CIFAR10.checkpoints["resnet56"].url in message
    assert message.endswith(f"copy it to {keras_home / 'models' / 'resnet56-4bfd9763.th'}")
    assert not (keras_home / "models").exists()  # nothing written


def test_a_network_that_never_answers_fails_within_five_seconds(keras_home, monkeypatch):
    released = threading.Event()

    def hang(address, timeout=None):
        released.wait(30)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    try:
        with pytest.raises(DataUnavailableError, match="no answer within"):
            keras_resnet.build("resnet20", weights="cifar10")
        assert time.monotonic() - started < 5
    finally:
        released.set()  # the abandoned connection attempt ends with the test


def test_a_cached_file_whose_hash_differs_is_refused_and_not_used(keras_home):
    path = keras_home / "models" / "resnet20-12fca82f.th"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a damaged download")
    with pytest.raises(ModelFileError, match=r"not the published resnet20-12fca82f\.th.*not used"):
        keras_resnet.build("resnet20", weights="cifar10")
    assert path.read_bytes() == b"a damaged download"  # the user's file is left for them


def fake_download(content: bytes, calls: list):
    """keras.utils.get_file writing ``content`` where it is asked to, as a download would."""

    def get_file(fname, origin, cache_dir, cache_subdir, force_download):
        calls.append(origin)
        target = os.path.join(cache_dir, cache_subdir, fname)
        with open(target, "wb") as file:
            file.write(content)
        return target

    return get_file


def test_a_download_whose_hash_differs_is_deleted(keras_home, monkeypatch):
    calls = []
    monkeypatch.setattr(pretrained, "check_reachable", lambda url, timeout: None)
    monkeypatch.setattr(keras.utils, "get_file", fake_download(b"not the checkpoint", calls))
    with pytest.raises(ModelFileError, match="SHA-256 begins"):
        keras_resnet.build("resnet20", weights="cifar10")
    assert calls == [CIFAR10.checkpoints["resnet20"].url]
    assert list((keras_home / "models").iterdir()) == []  # neither the file nor a part of it


@needs_checkpoints
def test_a_download_lands_in_the_cache_once_and_is_reused(keras_home, monkeypatch):
    calls = []
    content = (PUBLISHED / "resnet20-12fca82f.th").read_bytes()
    monkeypatch.setattr(pretrained, "check_reachable", lambda url, timeout: None)
    monkeypatch.setattr(keras.utils, "get_file", fake_download(content, calls))
    keras_resnet.build("resnet20", weights="cifar10")
    keras_resnet.build("resnet20", weights="cifar10")
    assert len(calls) == 1
    assert [p.name for p in (keras_home / "models").iterdir()] == ["resnet20-12fca82f.th"]


def test_the_cache_follows_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    checkpoint = CIFAR10.checkpoints["resnet32"]
    assert pretrained.cache_path(checkpoint) == tmp_path / "models" / "resnet32-d509ac18.th"
    monkeypatch.delenv("KERAS_HOME")
    expected = os.path.expanduser("~/.keras/models/resnet32-d509ac18.th")
    assert str(pretrained.cache_path(checkpoint)) == expected


def test_saved_and_reloaded_and_as_weights_files_it_predicts_the_same(cache, tmp_path):
    model = keras_resnet.build("resnet20", weights="cifar10", classifier_activation="softmax")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(expected.sum(axis=-1), 1.0, rtol=1e-5)  # softmax, as asked
    model.save(tmp_path / "resnet20.keras")
    model.save_weights(tmp_path / "resnet20.weights.h5")
    reloaded = saving.load_model(tmp_path / "resnet20.keras")
    assert class_names_of(reloaded) == CIFAR10.class_names
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)
    for file in ("resnet20.keras", "resnet20.weights.h5"):
        again = keras_resnet.build(
            "resnet20",
            weights=tmp_path / file,
            classifier_activation="softmax",
            input_normalization=CIFAR10.normalization,
        )
        np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-6)


def test_a_pytorch_checkpoint_path_loads_as_the_published_weights(cache):
    published = keras_resnet.build("resnet20", weights="cifar10")
    local = keras_resnet.build("resnet20", weights=cache / "resnet20-12fca82f.th")
    learned = [layer for layer in local.layers if layer.weights]
    assert len(learned) == 3 * 3 + 3  # 9 blocks, the stem's conv and BN, the head
    for layer in learned:
        for ours, theirs in zip(
            layer.get_weights(), published.get_layer(layer.name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)


def test_a_backbone_or_another_head_keeps_the_published_features(cache):
    published = keras_resnet.build("resnet20", weights="cifar10")
    backbone = keras_resnet.build("resnet20", weights="cifar10", include_top=False, pooling="avg")
    hundred = keras_resnet.build("resnet20", weights="cifar10", num_classes=100)
    stem = published.get_layer("stem_conv").kernel
    for model in (backbone, hundred):
        np.testing.assert_array_equal(model.get_layer("stem_conv").kernel, stem)
    assert hundred.output_shape == (None, 100) and class_names_of(hundred) is None


def test_a_file_named_like_the_checkpoint_is_found_offline_by_copy(keras_home):
    if not PUBLISHED.is_dir():
        pytest.skip(f"{PUBLISHED} (the published checkpoints) is absent")
    (keras_home / "models").mkdir(parents=True)
    shutil.copy(PUBLISHED / "resnet20-12fca82f.th", keras_home / "models")
    assert keras_resnet.build("resnet20", weights="cifar10").name == "resnet20"
