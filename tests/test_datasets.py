"""Datasets other than CIFAR-10: tfds names (mocked), image folders, streaming, the class names
a model keeps, and ``predict``/``evaluate`` on them. Everything is generated here, offline."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from keras_resnet import cli, models
from keras_resnet.errors import ConfigError, DataUnavailableError
from keras_resnet.saving import load_model
from keras_resnet.trainer import data
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.data import CifarBatches, FolderImages, Split, cache, folders
from keras_resnet.trainer.data import tfds as tfds_loader
from keras_resnet.trainer.fit import build_model, train
from keras_resnet.trainer.images import ImageError, load_image
from keras_resnet.trainer.run_folder import RunFolder

# Figures: tests/test_reports.py. tfds's mock data imports TensorFlow: on the worker of
# tests/test_export.py.
pytestmark = [pytest.mark.usefixtures("quick_figures"), pytest.mark.xdist_group("tensorflow")]

tfds = pytest.importorskip("tensorflow_datasets")

COLOURS = ("blue", "green", "red")


def write_folder(root, sizes=((20, 24),), per_class=(6, 3), test="test", modes=("RGB",)):
    """root/{train,test}/<colour>/*: each class a noisy primary colour; files cycle through
    ``sizes`` (height, width) and PIL ``modes``; greyscale and RGBA ones as PNG."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", test), per_class, strict=True):
        for c, colour in enumerate(COLOURS):
            folder = root / split / colour
            folder.mkdir(parents=True)
            for i in range(n):
                height, width = sizes[i % len(sizes)]
                pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
                pixels[..., 2 - c] += 180  # blue, green, red: sorted names, channels 2, 1, 0
                mode = modes[i % len(modes)]
                suffix = "jpg" if mode == "RGB" and i % 2 else "png"
                Image.fromarray(pixels).convert(mode).save(folder / f"{i}.{suffix}")
    return root


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(tfds_loader, "check_reachable", lambda url: None)


def mocked(n=6):
    return tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE)


# --- tfds datasets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "classes"), [("cifar10", 10), ("cifar100", 100), ("svhn_cropped", 10)]
)
def test_tfds_datasets_bring_their_classes_and_image_size(tmp_path, online, name, classes):
    # Mocked data has no metadata files, so tfds names the classes "0", "1", ...; a prepared
    # dataset's names (airplane, ...) come from the same ClassLabel feature.
    with mocked(7):
        loaded = data.load_dataset(name, str(tmp_path))
    assert loaded.name == name and loaded.source == "tfds"
    assert len(set(loaded.class_names)) == classes
    assert loaded.image_shape == (32, 32, 3)
    for split in (loaded.train, loaded.test):
        assert split.images.shape == (7, 32, 32, 3) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32 and split.labels.max() < classes


def test_tfds_images_are_resized_and_greyscale_becomes_rgb(tmp_path, online):
    with mocked(5):
        cifar = data.load_dataset("cifar10", str(tmp_path), image_size=(40, 36))
        mnist = data.load_dataset("mnist", str(tmp_path))
    assert cifar.train.images.shape == (5, 40, 36, 3) and cifar.image_shape == (40, 36, 3)
    assert mnist.image_shape == (28, 28, 3)
    images = mnist.train.images
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey: equal channels


def test_unknown_or_unsuitable_tfds_names_are_one_config_error():
    with pytest.raises(ConfigError, match=r"'cifar11' is neither a tfds dataset") as info:
        data.load_dataset("cifar11")
    assert info.value.parameter == "dataset"
    with pytest.raises(ConfigError, match=r"'imdb_reviews' has the features .*'text'"):
        data.load_dataset("imdb_reviews")


def test_tfds_datasets_are_refused_over_the_memory_budget(tmp_path, online):
    with mocked(20), pytest.raises(ConfigError) as info:
        data.load_dataset("cifar10", str(tmp_path), max_memory_gb=1e-5)
    assert info.value.parameter == "max_memory_gb"
    assert info.value.reason.startswith("is 1e-05 GB, too little to hold cifar10 (train split)")


def test_offline_another_dataset_fails_fast_naming_its_host(tmp_path, monkeypatch):
    import socket

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: pytest.fail("tfds.load was called"))
    with pytest.raises(DataUnavailableError) as info:
        data.load_dataset("svhn_cropped", str(tmp_path / "tfds"))
    message = str(info.value)
    assert message.startswith("Could not load svhn_cropped") and "cannot reach" in message
    assert "ufldl.stanford.edu" in message and "--data-dir" in message
    assert not (tmp_path / "tfds").exists()


def test_offline_the_messages_name_the_dataset_asked_for_without_tfds_warnings(
    tmp_path, monkeypatch, capfd
):
    import socket

    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DataUnavailableError) as info:
        data.load_dataset("mnist", str(tmp_path / "new"))
    assert "Could not load mnist" in str(info.value) and "cifar10" not in str(info.value)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    with pytest.raises(DataUnavailableError) as info:
        data.load_dataset("mnist", str(tmp_path / "mine"))
    assert "(mnist/<version>/...)" in str(info.value) and "cifar10" not in str(info.value)
    assert "Variant folder" not in capfd.readouterr().err


# --- image folders ------------------------------------------------------------------------


def test_a_folder_gives_sorted_classes_rgb_images_and_labels(tmp_path):
    root = write_folder(tmp_path / "shapes", modes=("RGB", "L", "RGBA"), test="val")
    loaded = data.load_dataset(f"folder:{root}")
    assert loaded.class_names == COLOURS
    assert loaded.name == f"folder:{root.resolve()}" and loaded.source == "folder"
    assert loaded.train.images.shape == (18, 20, 24, 3) and isinstance(
        loaded.train.images, np.ndarray
    )
    assert len(loaded.test) == 9
    np.testing.assert_array_equal(np.bincount(loaded.train.labels), [6, 6, 6])
    # Each class's colour channel is the brightest, greyscale and RGBA files included.
    for images, labels in ((loaded.train.images, loaded.train.labels),):
        colour_rgb = [images[labels == c][..., 2 - c].mean() for c in range(3)]
        other = [images[labels == c][..., c - 2 if c != 2 else 1].mean() for c in range(3)]
        assert min(colour_rgb) > max(other)


def test_image_size_resizes_mixed_sizes(tmp_path):
    root = write_folder(tmp_path / "mixed", sizes=((20, 24), (33, 17)))
    loaded = data.load_dataset(f"folder:{root}", image_size=(16, 16))
    assert loaded.image_shape == (16, 16, 3)


def test_mixed_sizes_without_image_size_are_refused_naming_them(tmp_path):
    root = write_folder(tmp_path / "mixed", sizes=((20, 24), (20, 24), (33, 17)))
    with pytest.raises(ConfigError) as info:
        data.load_dataset(f"folder:{root}")
    assert info.value.parameter == "image_size"
    reason = info.value.reason
    assert "20x24 (18, e.g. " in reason and "33x17 (9, e.g. " in reason and "\n" not in reason


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda root: None, ConfigError, "which is not a folder"),
        (lambda root: root.write_text("x"), ConfigError, "which is not a folder"),
        (
            lambda root: (root / "train").mkdir(parents=True),
            ConfigError,
            r"must hold train/ and test/ .*train",
        ),
        (
            lambda root: [
                (root / s / c).mkdir(parents=True) for s in ("train", "test") for c in "ab"
            ],
            DataUnavailableError,
            r"train holds no images in class folders",
        ),
    ],
    ids=["missing", "a_file", "no_test", "empty"],
)
def test_unusable_folders_are_one_clear_line(tmp_path, make, error, match):
    root = tmp_path / "mine"
    make(root)
    with pytest.raises(error, match=match) as info:
        data.load_dataset(f"folder:{root}")
    assert "\n" not in str(info.value)
    if error is ConfigError:  # the folder named is the flag's value, so the flag is named
        assert info.value.parameter == "dataset"


@pytest.mark.parametrize(
    "dataset",
    [
        "../../etc/passwd",
        "/etc",
        "cifar10:99.0.0",
        "cifar10/x=1",
        "cifar10/no_such_config",
        "folder:/nonexistent",
        "folder:/proc/self",
    ],
)
def test_a_bad_dataset_is_one_line_naming_the_flag_and_exit_2(tmp_path, capsys, dataset):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "--model", "resnet8", "--dataset", dataset, "--output-dir", str(run_dir)
    )
    assert code == 2, err
    assert err.startswith("error: --dataset ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "WARNING" not in err
    assert not run_dir.exists()


def test_one_class_and_unequal_class_folders_are_refused(tmp_path):
    root = write_folder(tmp_path / "shapes")
    for colour in ("green", "red"):
        for file in (root / "train" / colour).iterdir():
            file.unlink()
        (root / "train" / colour).rmdir()
    with pytest.raises(DataUnavailableError, match=r"holds 1 class folder\(s\) \['blue'\]"):
        data.load_dataset(f"folder:{root}")
    (root / "train" / "green").mkdir()
    Image.new("RGB", (24, 20)).save(root / "train" / "green" / "0.png")
    with pytest.raises(DataUnavailableError, match=r"test holds the class folders .*'red'"):
        data.load_dataset(f"folder:{root}")


def truncated_jpeg(path):
    """A JPEG whose header reads but whose data stops halfway, as after a failed copy."""
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_corrupt_jpeg_is_refused_naming_the_file(tmp_path):
    root = write_folder(tmp_path / "shapes")
    broken = root / "train" / "red" / "1.jpg"
    truncated_jpeg(broken)
    where = f"folder:{root}"
    with pytest.raises(ImageError, match=r"1\.jpg: could not be decoded") as info:
        data.load_dataset(where, image_size=(20, 24))
    assert str(broken) in str(info.value) and "\n" not in str(info.value)
    # Streamed, the file is named when its batch is read.
    streamed = data.load_dataset(where, image_size=(20, 24), max_memory_gb=1e-9)
    with pytest.raises(ImageError, match=r"1\.jpg: could not be decoded"):
        streamed.train.images[np.arange(len(streamed.train))]
    broken.write_bytes(b"\xff\xd8 not really")  # not even a header
    with pytest.raises(ImageError, match=r"1\.jpg: not an image file PIL can read"):
        data.load_dataset(where)


def test_a_big_folder_streams_the_same_batches(tmp_path):
    root = write_folder(tmp_path / "shapes", modes=("RGB", "L"))
    held = data.load_dataset(f"folder:{root}")
    streamed = data.load_dataset(f"folder:{root}", max_memory_gb=1e-9)
    assert streamed.source == "folder (streamed)"
    assert isinstance(streamed.train.images, FolderImages)
    assert streamed.train.images.shape == held.train.images.shape
    assert isinstance(streamed.train.images[2:5], FolderImages)  # a slice decodes nothing
    subset = data.subset(streamed, train_size=10, val_size=4)
    assert isinstance(subset.validation.images, FolderImages) and len(subset.train) == 10
    for split in ("train", "test"):
        a = CifarBatches(getattr(held, split), 4, train=True, seed=3)
        b = CifarBatches(getattr(streamed, split), 4, train=True, seed=3)
        a.set_epoch(2), b.set_epoch(2)
        for i in range(len(a)):
            for x, y in zip(a[i], b[i], strict=True):
                np.testing.assert_array_equal(x, y)
    assert held.statistics() == streamed.statistics()


def test_a_large_read_is_decoded_in_chunks_on_threads(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "shapes", modes=("RGB", "L"))
    held = data.load_dataset(f"folder:{root}")
    streamed = data.load_dataset(f"folder:{root}", max_memory_gb=1e-9)
    monkeypatch.setattr(folders, "DECODE_CHUNK", 2)
    order = np.random.default_rng(0).permutation(len(held.train))
    np.testing.assert_array_equal(streamed.train.images[order], held.train.images[order])


# --- a streamed folder decoded once --------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every file a folder decodes from now on."""
    decoded = []

    def counted(path, size):
        decoded.append(str(path))
        return load_image(path, size)

    monkeypatch.setattr(folders, "load_image", counted)
    return decoded


def kept(root, run_dir, val_size=0) -> data.Dataset:
    """The folder streamed, read through a cache file in ``run_dir`` as a run reads it."""
    streamed = data.load_dataset(f"folder:{root}", max_memory_gb=1e-9)
    run_dir.mkdir(exist_ok=True)
    return cache.keep_decoded(data.subset(streamed, val_size=val_size), decoded_path(run_dir))


def decoded_path(run_dir) -> Path:
    return RunFolder(run_dir).decoded_path


def epoch_of(split, epoch) -> list:
    batches = CifarBatches(split, 4, train=True, seed=3)
    batches.set_epoch(epoch)
    return [batches[i] for i in range(len(batches))]


def test_a_streamed_folder_is_decoded_once_and_read_back_bit_for_bit(tmp_path, decodes):
    root = write_folder(tmp_path / "shapes", modes=("RGB", "L", "RGBA"))
    held = data.subset(data.load_dataset(f"folder:{root}"), val_size=3)
    decodes.clear()
    first = kept(root, tmp_path / "run", val_size=3)
    made = decoded_path(tmp_path / "run").stat()
    assert made.st_blocks * 512 >= made.st_size  # allocated: no hole to fault on a full disk
    for epoch, decoded in ((0, 27), (1, 0)):  # 15 training, 3 validation and 9 test images
        before = len(decodes)
        for split in ("train", "validation", "test"):
            expected = epoch_of(getattr(held, split), epoch)
            read = epoch_of(getattr(first, split), epoch)
            for (x, y), (cached_x, cached_y) in zip(expected, read, strict=True):
                np.testing.assert_array_equal(x, cached_x)
                np.testing.assert_array_equal(y, cached_y)
        assert len(decodes) - before == decoded
    # A resumed run opens the file again: each row's key checks out, nothing is decoded.
    again = kept(root, tmp_path / "run", val_size=3)
    for split in ("train", "validation", "test"):
        everything = np.arange(len(getattr(held, split)))
        np.testing.assert_array_equal(
            getattr(again, split).images[everything], getattr(held, split).images
        )
    assert len(decodes) == 27


def test_a_row_left_half_written_or_of_a_changed_file_is_decoded_again(tmp_path, decodes):
    root = write_folder(tmp_path / "shapes")
    everything = np.arange(18)
    kept(root, tmp_path / "run").train.images[everything]  # every training row written
    rows = np.load(decoded_path(tmp_path / "run"), mmap_mode="r+")
    rows["pixels"][0, 0, 0, 0] ^= 1  # a page of pixels that a power cut kept, and not its key
    rows["pixels"][1] = 0  # the key that vouches for them written, the pixels not
    rows["key"][2] ^= 1  # a damaged key
    rows.flush()
    del rows
    paths = kept(root, tmp_path / "other").train.images.paths
    changed = paths[3]
    Image.fromarray(np.full((20, 24, 3), 7, np.uint8)).save(changed)  # replaced since
    decodes.clear()
    images = kept(root, tmp_path / "run").train.images[everything]
    assert sorted(decodes) == sorted(paths[:4])
    np.testing.assert_array_equal(images, data.load_dataset(f"folder:{root}").train.images)
    assert (images[3] == 7).all()


def test_a_cache_cut_short_or_of_other_images_is_replaced(tmp_path, decodes):
    root = write_folder(tmp_path / "shapes")
    held = data.load_dataset(f"folder:{root}")
    path = decoded_path(tmp_path / "run")
    kept(root, tmp_path / "run").train.images[np.arange(18)]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decodes.clear()
    again = kept(root, tmp_path / "run").train.images[[5]]
    np.testing.assert_array_equal(again, held.train.images[[5]])
    assert len(decodes) == 1
    kept(root, tmp_path / "run", val_size=3)  # other splits: other rows, a new file
    assert np.load(path, mmap_mode="r").shape == (27,)


def test_the_cache_is_never_opened_through_a_symbolic_link(tmp_path):
    root = write_folder(tmp_path / "shapes")
    kept(root, tmp_path / "elsewhere")  # a cache file of the same shape: a link to it would do
    victim = decoded_path(tmp_path / "elsewhere")
    before = victim.read_bytes()
    (tmp_path / "run").mkdir()
    decoded_path(tmp_path / "run").symlink_to(victim)
    kept(root, tmp_path / "run").train.images[np.arange(18)]
    assert victim.read_bytes() == before
    assert not decoded_path(tmp_path / "run").is_symlink()


def test_statistics_are_the_training_images_channel_mean_and_std():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[..., 0] = 255
    images[:2, ..., 1] = 255
    stats = data.Dataset(Split(images, np.zeros(4, np.int32)), None).statistics()
    np.testing.assert_allclose(stats[0], (1.0, 0.5, 0.0))
    np.testing.assert_allclose(stats[1], (1e-3, 0.5, 1e-3))  # constant channels: no 0 std


# --- configuration ------------------------------------------------------------------------


def test_normalisation_follows_the_recipe_and_the_data():
    assert TrainConfig(dataset="cifar100").normalization == "half"  # the notes fix 0.5/0.5
    assert TrainConfig(recipe="kuangliu").normalization == "cifar10"
    assert TrainConfig(recipe="kuangliu", dataset="cifar100").normalization == "data"
    explicit = TrainConfig(recipe="kuangliu", dataset="svhn_cropped", normalization="cifar10")
    assert explicit.normalization == "cifar10"
    assert TrainConfig(normalization="data").normalization == "data"


def test_dataset_settings_are_checked_and_recorded(tmp_path):
    config = TrainConfig(dataset="folder:data/shapes", image_size=[64], max_memory_gb=0.5)
    assert config.image_size == (64, 64)
    assert str(config.run_dir) == "runs/resnet34-shapes"
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert str(TrainConfig(dataset="cifar100").run_dir) == "runs/resnet34-cifar100"
    for settings, parameter in (
        ({"synthetic": True, "dataset": "cifar100"}, "synthetic"),
        ({"image_size": (0, 8)}, "image_size"),
        ({"image_size": (4, 4)}, "image_size"),  # resnet34 needs 8 pixels a side
        ({"image_size": (1, 2, 3)}, "image_size"),
        ({"max_memory_gb": 0}, "max_memory_gb"),
        ({"dataset": "folder:"}, "dataset"),
    ):
        with pytest.raises(ConfigError) as info:
            TrainConfig(**settings)
        assert info.value.parameter == parameter


def test_the_model_takes_the_data_s_size_classes_and_names(tmp_path):
    root = write_folder(tmp_path / "shapes")
    loaded = data.load_dataset(f"folder:{root}")
    model = build_model(TrainConfig(model="tiny_resnet6", normalization="data"), 1, loaded)
    assert model.input_shape == (None, 20, 24, 3) and model.output_shape == (None, 3)
    assert models.class_names_of(model) == COLOURS
    assert models.dataset_of(model) == loaded.name
    mean = loaded.statistics()[0]
    normalize = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(normalize.mean), np.array(mean) * 255, rtol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    assert models.class_names_of(load_model(path)) == COLOURS  # safe mode keeps the names


def test_build_refuses_class_names_that_do_not_fit():
    with pytest.raises(ValueError, match=r"class_names must be 3 distinct strings"):
        models.build("tiny_resnet6", num_classes=3, class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"class_names must be 2 distinct strings"):
        models.build("tiny_resnet6", num_classes=2, class_names=("a", "a"))
    with pytest.raises(ValueError, match="include_top"):
        models.build("tiny_resnet6", include_top=False, class_names=("a",), num_classes=1)


# --- end to end ---------------------------------------------------------------------------


def test_train_predict_and_evaluate_a_folder(tmp_path, capsys, monkeypatch):
    root = write_folder(tmp_path / "shapes", per_class=(16, 4), modes=("RGB", "L", "RGBA"))
    run = tmp_path / "run"
    code = cli.main(
        ["train", "--model", "tiny_resnet6", "--epochs", "1", "--batch-size", "16",
         "--dataset", f"folder:{root}", "--output-dir", str(run)]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == list(COLOURS) and len(metrics["confusion_matrix"]) == 3
    assert json.loads((run / "config.json").read_text())["dataset"] == f"folder:{root}"
    capsys.readouterr()

    image = root / "test" / "red" / "0.png"
    assert cli.main(["predict", str(run / "model.keras"), str(image), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.split(": ")[1].split()[0] in COLOURS

    monkeypatch.chdir(tmp_path)  # the model's saved dataset name finds the folder from anywhere
    assert cli.main(["evaluate", str(run / "model.keras"), "--output-dir", "eval"]) == 0
    out = capsys.readouterr().out
    assert f"folder:{root.resolve()} test accuracy:" in out and "  red " in out
    saved = json.loads((tmp_path / "eval" / "model-evaluation.json").read_text())
    assert saved["class_names"] == list(COLOURS)


def test_evaluate_refuses_a_dataset_of_other_classes(tmp_path, capsys):
    root = write_folder(tmp_path / "shapes")
    model = build_model(TrainConfig(model="tiny_resnet6"), 1, data.load_dataset(f"folder:{root}"))
    model.save(tmp_path / "m.keras")
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(tmp_path / "m.keras"), "--synthetic"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "scores 3 classes ['blue', 'green', 'red']; cifar10 has 10" in err and "\n" not in err


def test_evaluate_refuses_a_bad_memory_budget_as_its_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(tmp_path / "m.keras"), "--max-memory-gb", "0"])
    assert info.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: --max-memory-gb must be a positive number, got 0.0"
    )


def test_predict_with_a_model_without_names_shows_indices(tmp_path, capsys):
    model = keras.Model(*_tiny_classifier(5))
    model.save(tmp_path / "plain.keras")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    assert cli.main(["predict", str(tmp_path / "plain.keras"), str(tmp_path / "red.png")]) == 0
    out, err = capsys.readouterr()
    assert "class " in out and "holds no class names, so classes show as indices" in err


def _tiny_classifier(classes: int):
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return inputs, keras.layers.Dense(classes)(pooled)


@pytest.mark.parametrize(
    ("sizes", "broken", "expected"),
    [
        (((20, 24), (33, 17)), False, "--image-size is needed"),
        (((20, 24),), True, "1.jpg: could not be decoded"),
    ],
    ids=["mixed_sizes", "corrupt_jpeg"],
)
def test_the_cli_refuses_bad_folders_in_one_line_leaving_no_run(
    tmp_path, capsys, sizes, broken, expected
):
    root = write_folder(tmp_path / "shapes", sizes=sizes)
    if broken:
        truncated_jpeg(root / "test" / "blue" / "1.jpg")
    with pytest.raises(SystemExit) as info:
        train_args = ["--model", "tiny_resnet6", "--dataset", f"folder:{root}"]
        train_args += ["--image-size", "20", "24"] if broken else []
        cli.train_main([*train_args, "--output-dir", str(tmp_path / "run")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "run").exists()


class DecodesPerEpoch(keras.callbacks.Callback):
    """How many files each epoch decoded, its validation included."""

    def __init__(self, decodes: list[str]):
        super().__init__()
        self.decodes, self.marks = decodes, []

    def on_train_begin(self, logs=None):
        self.marks.append(len(self.decodes))

    def on_epoch_end(self, epoch, logs=None):
        self.marks.append(len(self.decodes))

    @property
    def per_epoch(self) -> list[int]:
        return np.diff(self.marks).tolist()


def test_training_on_a_streamed_folder_decodes_once_and_matches_decoding_every_epoch(
    tmp_path, monkeypatch, capsys, decodes
):
    root = write_folder(tmp_path / "shapes", per_class=(8, 2))
    settings = dict(
        model="tiny_resnet6", batch_size=8, epochs=3, dataset=f"folder:{root}", max_memory_gb=1e-9
    )
    counted = DecodesPerEpoch(decodes)
    run = train(TrainConfig(**settings, output_dir=str(tmp_path / "kept")), callbacks=[counted])
    out = capsys.readouterr().out
    assert f"decoded the first time training reads them and kept in {decoded_path(run)}" in out
    # Each of the 24 training and 6 test images is decoded once, in epoch 1 (or by Keras's
    # look at the first batch before it); nothing after it, the final test included.
    assert len(decodes) == len(set(decodes)) == 30 and counted.per_epoch[1:] == [0, 0]

    monkeypatch.setattr(cache, "free_space", lambda folder: cache.SPARE)  # no room beside it
    decodes.clear()
    every = DecodesPerEpoch(decodes)
    config = TrainConfig(**settings, output_dir=str(tmp_path / "streamed"))
    streamed = train(config, callbacks=[every])
    out = capsys.readouterr().out
    assert out.count(f"{decoded_path(streamed)} cannot keep its decoded images") == 1
    assert "to spare): they are decoded batch by batch, every epoch." in out
    assert not decoded_path(streamed).exists()
    assert every.per_epoch[1:] == [30, 30]
    assert (run / "history.csv").read_text() == (streamed / "history.csv").read_text()
    for a, b in zip(
        load_model(run / "model.keras").weights,
        load_model(streamed / "model.keras").weights,
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_on_a_streamed_folder_resumes_exactly(tmp_path, decodes):
    root = write_folder(tmp_path / "shapes", per_class=(8, 2))
    settings = dict(
        model="tiny_resnet6", batch_size=8, dataset=f"folder:{root}", max_memory_gb=1e-9
    )
    unbroken = train(TrainConfig(**settings, epochs=2, output_dir=str(tmp_path / "a")), verbose=0)
    train(TrainConfig(**settings, epochs=1, output_dir=str(tmp_path / "b")), verbose=0)
    decodes.clear()
    resumed = train(TrainConfig(**settings, epochs=2, output_dir=str(tmp_path / "b")), verbose=0)
    assert decodes == []  # the first run's epoch decoded every image the second one reads
    for a, b in zip(
        load_model(unbroken / "model.keras").weights,
        load_model(resumed / "model.keras").weights,
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
