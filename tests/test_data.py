"""CIFAR-10 loading (through mocked tfds), synthetic data, subsets and batches; other datasets
and image folders are in test_datasets.py."""

import math
import socket

import numpy as np
import pytest

from keras_resnet.trainer import data
from keras_resnet.trainer.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CLASS_NAMES,
    PAD,
    CifarBatches,
    Dataset,
    DataUnavailableError,
    Split,
    subset,
    synthetic_cifar10,
)
from keras_resnet.trainer.data import tfds as tfds_loader

tfds = pytest.importorskip("tensorflow_datasets")
# tfds's mock data imports TensorFlow: on the worker of tests/test_export.py.
pytestmark = pytest.mark.xdist_group("tensorflow")


# --- helpers -------------------------------------------------------------------------------


def nonzero_images(n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images with no zero pixel, so the zero padding is recognisable."""
    return np.random.default_rng(seed).integers(1, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def small_split(n: int, seed: int = 0) -> Split:
    """Images with no zero pixel; label i for image i, so a batch's labels are its indices."""
    return Split(nonzero_images(n, seed), np.arange(n, dtype=np.int32))


# --- constants -----------------------------------------------------------------------------


def test_class_names_are_cifar10_order():
    assert CLASS_NAMES == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    np.testing.assert_allclose(CIFAR10_MEAN, (0.4914, 0.4822, 0.4465))
    np.testing.assert_allclose(CIFAR10_STD, (0.2023, 0.1994, 0.2010))
    assert PAD == 4


# --- load_tfds("cifar10") -------------------------------------------------------------


@pytest.fixture
def online(monkeypatch):
    """The download host counts as reachable; the hosts checked are recorded."""
    checked = []
    monkeypatch.setattr(tfds_loader, "check_reachable", checked.append)
    return checked


@pytest.fixture
def offline(monkeypatch):
    """Every connection fails at the name lookup, as without a network."""

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)


def check_cifar(loaded: Dataset, n: int) -> None:
    assert isinstance(loaded, Dataset)
    assert loaded.source == "tfds"
    assert loaded.validation is None
    for split in (loaded.train, loaded.test):
        assert isinstance(split, Split)
        assert split.images.shape == (n, 32, 32, 3)
        assert split.images.dtype == np.uint8
        assert split.labels.shape == (n,)
        assert split.labels.dtype == np.int32
        assert split.labels.min() >= 0 and split.labels.max() < 10
        assert len(split) == n
    # Mocked data is random: the images are not all one value.
    assert loaded.train.images.std() > 10


@pytest.mark.parametrize("use_data_dir", [False, True], ids=["default_dir", "data_dir"])
def test_load_cifar10_through_mocked_tfds(tmp_path, online, use_data_dir):
    # USE_CODE generates examples from cifar10's feature spec; USE_FILES needs metadata
    # files that tfds does not ship for cifar10 (and fails).
    n = 37
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
        loaded = data.load_tfds("cifar10", str(tmp_path) if use_data_dir else None)
    check_cifar(loaded, n)


@pytest.mark.parametrize(
    "error",
    [OSError("network is unreachable"), tfds.download.DownloadError("checksum mismatch")],
    ids=["OSError", "DownloadError"],
)
def test_load_cifar10_failure_names_what_was_tried(tmp_path, monkeypatch, online, error):
    calls = []

    def failing_load(name, **kwargs):
        calls.append((name, kwargs.get("data_dir")))
        raise error

    monkeypatch.setattr(tfds, "load", failing_load)
    data_dir = str(tmp_path / "cifar_here")
    with pytest.raises(DataUnavailableError) as info:
        data.load_tfds("cifar10", data_dir)
    message = str(info.value)
    assert calls == [("cifar10", data_dir)]
    assert repr(data_dir) in message
    assert "--data-dir" in message
    assert "--synthetic" in message
    assert type(error).__name__ in message
    assert str(error) in message
    assert info.value.__cause__ is error

    # Without a data_dir the message says tfds's default one was tried.
    with pytest.raises(DataUnavailableError, match="default data_dir") as info:
        data.load_tfds("cifar10")
    assert "--data-dir" in str(info.value) and "--synthetic" in str(info.value)
    assert calls[-1] == ("cifar10", None)


def test_load_cifar10_empty_split_is_an_error(tmp_path, monkeypatch, online):
    import tensorflow as tf

    def empty_load(name, split, data_dir):
        images = np.zeros((0, 32, 32, 3), np.uint8)
        labels = np.zeros((0,), np.int64)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    monkeypatch.setattr(tfds, "load", empty_load)
    with pytest.raises(DataUnavailableError, match="'train' split") as info:
        data.load_tfds("cifar10", str(tmp_path))
    assert repr(str(tmp_path)) in str(info.value)


def test_offline_fails_in_seconds_before_tfds_writes_anything(tmp_path, monkeypatch, offline):
    import time

    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: pytest.fail("tfds.load was called"))
    data_dir = tmp_path / "tfds"
    started = time.monotonic()
    with pytest.raises(DataUnavailableError) as info:
        data.load_tfds("cifar10", str(data_dir))
    assert time.monotonic() - started < 10
    message = str(info.value)
    # The host comes from tfds's cifar10 builder, and the message is the usual one.
    assert "cannot reach www.cs.toronto.edu:443" in message
    assert "cifar-10-binary.tar.gz" in message and "Name or service not known" in message
    assert repr(str(data_dir)) in message and "--data-dir" in message and "--synthetic" in message
    assert not data_dir.exists()  # no half-made cifar10/ or downloads/


def test_prepared_data_is_read_without_a_network_check(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    monkeypatch.setattr(tfds_loader, "check_reachable", lambda url: pytest.fail("network checked"))
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        loaded = data.load_tfds("cifar10", str(tmp_path))
    check_cifar(loaded, 5)


def test_a_data_dir_that_is_not_tfds_s_is_refused_naming_what_is_there(
    tmp_path, monkeypatch, online
):
    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: pytest.fail("tfds.load was called"))
    (tmp_path / "holiday.jpg").write_bytes(b"jpeg")
    (tmp_path / "notes").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataUnavailableError) as info:
        data.load_tfds("cifar10", str(tmp_path))
    message = str(info.value)
    assert f"data_dir={str(tmp_path)!r} does not hold a tfds layout" in message
    assert "found holiday.jpg, notes/" in message
    assert sorted(tmp_path.rglob("*")) == before and online == []

    with pytest.raises(DataUnavailableError, match="is a file, not a folder"):
        data.load_tfds("cifar10", str(tmp_path / "holiday.jpg"))


def test_a_tfds_data_dir_with_other_datasets_may_receive_cifar10(tmp_path):
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    (tmp_path / "downloads").mkdir()
    tfds_loader.check_data_dir(str(tmp_path), "cifar10")
    tfds_loader.check_data_dir(str(tmp_path / "new"), "cifar10")


# --- synthetic data ------------------------------------------------------------------------


def test_synthetic_default_sizes_dtypes_and_range():
    synthetic = synthetic_cifar10()
    assert synthetic.source == "synthetic"
    assert synthetic.validation is None
    assert synthetic.train.images.shape == (2048, 32, 32, 3)
    assert synthetic.test.images.shape == (512, 32, 32, 3)
    for split in (synthetic.train, synthetic.test):
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32
        assert split.labels.shape == (len(split.images),)
        assert set(np.unique(split.labels)) == set(range(10))
    # The images use the range, not a constant.
    assert synthetic.train.images.min() < 30 and synthetic.train.images.max() > 225


def test_synthetic_is_deterministic_per_seed():
    a, b, c = (synthetic_cifar10(64, 16, seed=s) for s in (7, 7, 8))
    assert a.train.images.shape == (64, 32, 32, 3) and a.test.labels.shape == (16,)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, split).images, getattr(b, split).images)
        np.testing.assert_array_equal(getattr(a, split).labels, getattr(b, split).labels)
        assert not np.array_equal(getattr(a, split).images, getattr(c, split).images)
        assert not np.array_equal(getattr(a, split).labels, getattr(c, split).labels)


def test_synthetic_classes_do_not_depend_on_the_seed():
    """The seed picks the images; a model of seed 0's classes scores as well at seed 1."""
    a, b = synthetic_cifar10(1000, 300, seed=0), synthetic_cifar10(1000, 300, seed=1)
    assert not np.array_equal(a.test.images, b.test.images)
    train_x = a.train.images.reshape(1000, -1).astype(np.float64)
    means = np.stack([train_x[a.train.labels == c].mean(0) for c in range(10)])
    for split in (a.test, b.test):
        test_x = split.images.reshape(300, -1).astype(np.float64)
        predicted = ((test_x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        assert (predicted == split.labels).mean() > 0.9


def test_synthetic_classes_are_learnable():
    synthetic = synthetic_cifar10(train_size=1000, test_size=300)
    train_x = synthetic.train.images.reshape(1000, -1).astype(np.float64)
    test_x = synthetic.test.images.reshape(300, -1).astype(np.float64)
    means = np.stack([train_x[synthetic.train.labels == c].mean(0) for c in range(10)])
    # Class means are far apart compared with pixel noise.
    distances = np.sqrt(((means[:, None] - means[None]) ** 2).mean(-1))
    assert distances[~np.eye(10, dtype=bool)].min() > 10
    predicted = ((test_x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == synthetic.test.labels).mean() > 0.5


# --- subset --------------------------------------------------------------------------------


@pytest.fixture
def small_data() -> Dataset:
    train = small_split(50, seed=1)
    test = small_split(20, seed=2)
    return Dataset(train=train, test=test, source="synthetic")


def test_subset_holds_out_last_images_for_validation(small_data):
    result = subset(small_data, val_size=10)
    np.testing.assert_array_equal(result.validation.images, small_data.train.images[40:])
    np.testing.assert_array_equal(result.validation.labels, np.arange(40, 50))
    np.testing.assert_array_equal(result.train.images, small_data.train.images[:40])
    np.testing.assert_array_equal(result.train.labels, np.arange(40))
    assert result.test is small_data.test
    assert result.source == "synthetic"

    # The defaults change nothing.
    result = subset(small_data)
    assert result.validation is None
    np.testing.assert_array_equal(result.train.images, small_data.train.images)
    np.testing.assert_array_equal(result.train.labels, small_data.train.labels)


def test_subset_train_size_keeps_first_of_the_rest(small_data):
    result = subset(small_data, train_size=15, val_size=10)
    np.testing.assert_array_equal(result.train.images, small_data.train.images[:15])
    np.testing.assert_array_equal(result.train.labels, np.arange(15))
    np.testing.assert_array_equal(result.validation.labels, np.arange(40, 50))
    # All that is left is allowed.
    assert len(subset(small_data, train_size=40, val_size=10).train) == 40


def test_subset_rejects_bad_sizes(small_data):
    for val_size in (50, 51, -1):
        with pytest.raises(ValueError, match="val_size") as info:
            subset(small_data, val_size=val_size)
        assert f"got {val_size}" in str(info.value)
        assert "49" in str(info.value)  # the largest allowed value
    for train_size in (0, 41, -3):
        with pytest.raises(ValueError, match="train_size") as info:
            subset(small_data, train_size=train_size, val_size=10)
        assert f"got {train_size}" in str(info.value)
        assert "40" in str(info.value)  # the images left after validation
    with pytest.raises(ValueError, match=r"train_size.* 50 .*got 51"):
        subset(small_data, train_size=51)


# --- CifarBatches --------------------------------------------------------------------------


def collect(batches: CifarBatches):
    pairs = [batches[i] for i in range(len(batches))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_batches_length_and_partial_last_batch():
    split = small_split(203)
    batches = CifarBatches(split, batch_size=32)
    assert len(batches) == math.ceil(203 / 32) == 7
    images, labels = collect(batches)
    assert [len(x) for x in labels] == [32] * 6 + [11]
    assert images[-1].shape == (11, 32, 32, 3)
    assert len(CifarBatches(small_split(64), batch_size=32)) == 2


def test_eval_batches_are_in_order():
    split = small_split(70)
    batches = CifarBatches(split, batch_size=32, train=False)
    batches.set_epoch(5)  # the epoch changes nothing for evaluation
    images, labels = collect(batches)
    np.testing.assert_array_equal(np.concatenate(images), split.images)
    np.testing.assert_array_equal(np.concatenate(labels), split.labels)


def test_train_batches_cover_every_image_once_per_epoch_unchanged():
    split = small_split(203)
    batches = CifarBatches(split, batch_size=32, train=True, seed=1)
    orders = []
    for epoch in range(2):
        batches.set_epoch(epoch)
        images, labels = collect(batches)
        order = np.concatenate(labels)
        assert np.array_equal(np.sort(order), np.arange(203))
        assert not np.array_equal(order, np.arange(203))  # shuffled
        for x, y in zip(images, labels, strict=True):
            assert x.dtype == np.uint8 and x.shape == (len(y), 32, 32, 3)
            assert y.dtype == np.int32
        # The images are the stored ones: augmentation happens inside the model.
        np.testing.assert_array_equal(np.concatenate(images), split.images[order])
        orders.append(order)
    assert not np.array_equal(*orders)


def test_train_batches_follow_seed_and_epoch():
    split = small_split(100)

    def epoch_batches(seed, epoch):
        batches = CifarBatches(split, batch_size=16, train=True, seed=seed)
        batches.set_epoch(epoch)
        return collect(batches)

    a_images, a_labels = epoch_batches(0, 3)
    b_images, b_labels = epoch_batches(0, 3)
    for x, y in zip(a_images + a_labels, b_images + b_labels, strict=True):
        np.testing.assert_array_equal(x, y)

    # A resumed run (straight to epoch 3) sees what an unbroken one (0, 1, 2, 3) sees.
    unbroken = CifarBatches(split, batch_size=16, train=True, seed=0)
    for epoch in range(4):
        unbroken.set_epoch(epoch)
        images, labels = collect(unbroken)
    for x, y in zip(images + labels, a_images + a_labels, strict=True):
        np.testing.assert_array_equal(x, y)

    other_epoch = np.concatenate(epoch_batches(0, 4)[1])
    other_seed = np.concatenate(epoch_batches(1, 3)[1])
    order = np.concatenate(a_labels)
    assert not np.array_equal(order, other_epoch)
    assert not np.array_equal(order, other_seed)


def test_batches_work_as_a_keras_dataset():
    import keras

    split = small_split(40)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(
        inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs))
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    split.labels[:] %= 10
    history = model.fit(CifarBatches(split, batch_size=16, train=True), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
