"""The training data: a tfds image-classification dataset or a folder of images, and its
batches for ``model.fit``.

``load_dataset("cifar10")`` (or any tfds dataset with ``image`` and ``label`` features) reads
both splits once into uint8 arrays: CIFAR-10 is 150 MB. ``load_dataset("folder:PATH")`` reads
``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (or ``val/``), as Keras's
``image_dataset_from_directory`` lists them. A folder is held in memory too while both splits
fit in ``max_memory_gb``; a bigger one is streamed: ``FolderImages`` decodes a batch's files
when the batch is asked for, so memory holds a batch, not the dataset. Either way every epoch's
order follows from ``(seed, epoch)`` alone, so a resumed run sees exactly the data an unbroken
one would have. Augmentation and normalisation happen inside the model (``RandomCropFlip`` and
``build``'s ``input_normalization``), so batches stay uint8 until they reach the device.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from keras_resnet.errors import ConfigError, DataUnavailableError
from keras_resnet.trainer.images import ImageError, load_image

CLASS_NAMES = (
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
# The notes' per-channel statistics, on the 0-1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
PAD = 4  # the notes' random 32x32 crop from the image padded by 4 pixels on each side
SYNTHETIC_CLASSES_SEED = 0  # fixes the generated classes' colours, whatever the run's seed
DOWNLOAD_CHECK_SECONDS = 5.0


FOLDER = "folder:"  # --dataset folder:PATH
TEST_FOLDERS = ("test", "val")  # the first one present is a folder's test split
READ_BATCH = 10_000  # tfds examples per batch: batch_size=-1 needs the split size first
STATISTICS_IMAGES = 10_000  # normalization="data" samples at most this many training images
DECODE_THREADS = 8  # PIL decodes with the GIL released
GIGABYTE = 2**30


class FolderImages:
    """Image files that index like an (N, height, width, 3) uint8 array, decoded when read.

    As with numpy, a slice is a view (nothing is decoded) and an index array is a copy: the
    decoded images, made RGB and resized to ``size`` by ``images.load_image``, which names a
    file it cannot read.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[str], size: tuple[int, int]):
        self.paths = np.asarray(paths, dtype=object)
        self.size = tuple(size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self.size, 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> FolderImages | np.ndarray:
        if isinstance(index, slice):
            return FolderImages(self.paths[index], self.size)
        paths = self.paths[np.asarray(index)].reshape(-1)
        out = np.empty((len(paths), *self.size, 3), np.uint8)
        with ThreadPoolExecutor(min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
            for i, image in enumerate(pool.map(lambda p: load_image(p, self.size), paths)):
                out[i] = image
        return out


@dataclasses.dataclass
class Split:
    images: np.ndarray | FolderImages  # (N, height, width, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass
class Dataset:
    """The splits a run uses, and what the model must know of them."""

    train: Split
    test: Split
    validation: Split | None = None
    source: str = "tfds"  # tfds, folder, folder (streamed) or synthetic
    name: str = "cifar10"  # as --dataset names it
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) of the training images on the 0-1 scale, for
        ``normalization="data"``: over every image, or a fixed sample of a bigger split."""
        images, n = self.train.images, len(self.train)
        pick = np.arange(n)
        if n > STATISTICS_IMAGES:
            pick = np.sort(np.random.default_rng(0).choice(n, STATISTICS_IMAGES, replace=False))
        pixels = np.asarray(images[pick], np.float64).reshape(-1, 3) / 255.0
        std = np.maximum(pixels.std(axis=0), 1e-3)  # a constant channel must not divide by 0
        return tuple(map(float, pixels.mean(axis=0))), tuple(map(float, std))


def _hide_gpus_from_tensorflow() -> None:
    """tfds reads through TensorFlow; it must never reserve GPU memory that JAX needs."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            "Reading datasets needs TensorFlow (tensorflow-cpu), which is not installed: "
            "pip install -r requirements.txt, or train on --synthetic data."
        ) from error
    tf.config.set_visible_devices([], "GPU")


def _is_tfds_folder(path: Path) -> bool:
    """A tfds data_dir holds ``downloads/`` or ``<dataset>/[<config>/]<version>/`` folders
    with a ``dataset_info.json``."""
    if path.name == "downloads":
        return True
    return any(path.glob("*/dataset_info.json")) or any(path.glob("*/*/dataset_info.json"))


def check_data_dir(data_dir: str) -> None:
    """Refuse a ``data_dir`` that tfds would have to write into but that is not tfds's:
    a file, or a folder holding anything other than tfds datasets. Missing or empty is fine."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise DataUnavailableError(
            f"data_dir={data_dir!r} is a file, not a folder: pass the folder that holds "
            "the dataset's folder (cifar10/, ...)"
        )
    if not path.is_dir():
        return
    foreign = sorted(
        f"{entry.name}/" if entry.is_dir() else entry.name
        for entry in path.iterdir()
        if not (entry.is_dir() and _is_tfds_folder(entry)) and not entry.name.startswith(".")
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise DataUnavailableError(
            f"data_dir={data_dir!r} does not hold a tfds layout (cifar10/3.0.2/...), so nothing "
            f"was downloaded into it; found {shown}. Pass the folder that holds cifar10/ "
            "(the one given to tfds.load as data_dir), or an empty or new folder to download into."
        )


def download_url(builder) -> str:
    """The address a tfds builder downloads from: cifar10's names it; for other datasets (and
    if that moves) the dataset's homepage, whose host is usually the download's too."""
    cifar_info = getattr(builder, "_cifar_info", None)
    return getattr(cifar_info, "url", None) or builder.info.homepage


def check_reachable(url: str, timeout: float = DOWNLOAD_CHECK_SECONDS) -> None:
    """Fail in seconds when ``url``'s host (or the HTTPS proxy) cannot be reached.

    Offline, tfds retries its download for minutes before failing. The name lookup runs in a
    thread because ``getaddrinfo`` takes no timeout.
    """
    proxy = urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname, target.port or (80 if target.scheme == "http" else 443)
    failure: list[OSError] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as error:
            failure.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        reason = f"no answer within {timeout:g} s"
    elif failure:
        reason = f"{type(failure[0]).__name__}: {failure[0]}"
    else:
        return
    via = f" through the proxy {proxy}" if proxy else ""
    raise ConnectionError(f"cannot reach {host}:{port}{via} to download {url} ({reason})")


def _prepare_check(builder, data_dir: str | None) -> None:
    """Before tfds writes anything: when the dataset is not prepared, the data_dir must be
    tfds's (or new) and the download host reachable."""
    if builder.is_prepared():
        return
    if data_dir is not None:
        check_data_dir(data_dir)
    check_reachable(download_url(builder))


def load_dataset(
    name: str = "cifar10",
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    max_memory_gb: float = 4.0,
) -> Dataset:
    """``--dataset``: ``folder:PATH``, or the name of a tfds image-classification dataset."""
    if name.startswith(FOLDER):
        return load_folder(name[len(FOLDER) :], image_size, max_memory_gb)
    return load_tfds(name, data_dir, image_size, max_memory_gb)


def _tfds_builder(name: str, data_dir: str | None):
    """tfds's builder of ``name``, refused unless it has an image and a class label."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            "dataset",
            f"{name!r} is neither a tfds dataset (see tfds.list_builders()) nor {FOLDER}PATH",
        ) from None
    features = builder.info.features
    if not (
        "image" in features
        and "label" in features
        and isinstance(features["image"], tfds.features.Image)
        and isinstance(features["label"], tfds.features.ClassLabel)
    ):
        raise ConfigError(
            "dataset",
            f"{name!r} has the features {sorted(features)}; training needs an 'image' and a "
            "'label' (class label) feature",
        )
    return builder


def _tfds_pixels(channels: int, size: tuple[int, int] | None):
    """The tf.data map to RGB uint8 images of ``size``; None when they already are."""
    import tensorflow as tf

    if channels == 3 and size is None:
        return None

    def pixels(example: dict) -> dict:
        image = example["image"]
        if channels == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif channels == 4:  # onto white, as images.load_image does for predict
            alpha = tf.cast(image[..., 3:], tf.float32) / 255.0
            image = tf.cast(image[..., :3], tf.float32) * alpha + 255.0 * (1.0 - alpha)
        if size is not None:
            image = tf.image.resize(image, size, method="bicubic", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0, 255), tf.uint8)
        return {"image": image, "label": example["label"]}

    return pixels


def _read_tfds_split(
    name: str, split: str, data_dir: str | None, pixels, budget: list[float]
) -> Split:
    """One split as arrays; ``budget`` holds the bytes still allowed, and shrinks."""
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, data_dir=data_dir)
    if pixels is not None:
        dataset = dataset.map(pixels)
    images, labels = [], []
    for batch in tfds.as_numpy(dataset.batch(READ_BATCH)):
        budget[0] -= batch["image"].nbytes
        if budget[0] < 0:  # tfds does not always know the split sizes before reading
            raise MemoryBudgetError(f"{name} ({split} split)")
        images.append(batch["image"])
        labels.append(batch["label"])
    if not images:
        raise DataUnavailableError(f"The {name} {split!r} split in data_dir={data_dir!r} is empty")
    return Split(np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32))


def load_tfds(
    name: str = "cifar10",
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    max_memory_gb: float = 4.0,
) -> Dataset:
    """The train and test splits of the tfds dataset ``name`` as arrays, downloaded if tfds
    can; greyscale and RGBA images become RGB, and ``image_size`` resizes them (bicubic).

    The test split is ``test``, else ``validation``. tfds data is always held in memory, so a
    dataset over ``max_memory_gb`` is refused before anything is read.
    """
    _hide_gpus_from_tensorflow()
    builder = _tfds_builder(name, data_dir)
    shape = builder.info.features["image"].shape
    if image_size is None and None in shape[:2]:
        raise ConfigError(
            "image_size", f"is needed: the images of {name} vary in size {shape}; pass one"
        )
    size = None if image_size is None or tuple(image_size) == shape[:2] else tuple(image_size)
    height, width = size or shape[:2]
    splits = builder.info.splits
    test = next((s for s in ("test", "validation") if s in splits), "test")
    count = sum(splits[s].num_examples for s in ("train", test) if s in splits)
    if count * height * width * 3 > max_memory_gb * GIGABYTE:
        raise _over_budget(f"the {count} images of {name}", max_memory_gb)
    pixels = _tfds_pixels(shape[-1], size)
    budget = [max_memory_gb * GIGABYTE]
    try:
        _prepare_check(builder, data_dir)
        train = _read_tfds_split(name, "train", data_dir, pixels, budget)
        test_split = _read_tfds_split(name, test, data_dir, pixels, budget)
    except MemoryBudgetError as error:
        raise _over_budget(str(error), max_memory_gb) from None
    except DataUnavailableError:
        raise
    except Exception as error:  # tfds raises many types: network, missing files, bad checksums
        where = f"data_dir={data_dir!r}" if data_dir else "tfds's default data_dir"
        raise DataUnavailableError(
            f"Could not load {name}: tried tfds.load({name!r}) from {where}, downloading it "
            f"if missing, and got {type(error).__name__}: {error}\n"
            "Fix: on a machine with internet run "
            f'`python -c "import tensorflow_datasets as tfds; tfds.load({name!r}, '
            "data_dir='DIR')\"`, copy DIR here and pass --data-dir DIR; "
            "or try the program on generated data with --synthetic."
        ) from error
    names = tuple(builder.info.features["label"].names)
    return Dataset(train=train, test=test_split, name=name, class_names=names)


class MemoryBudgetError(Exception):
    """A tfds split outgrew ``max_memory_gb`` while it was read; the message says which."""


def _over_budget(what: str, max_memory_gb: float) -> ConfigError:
    return ConfigError(
        "max_memory_gb",
        f"is {max_memory_gb:g} GB, too little to hold {what} in memory as tfds datasets are; "
        "raise it, or pass a smaller --image-size",
    )


def _list_split(folder: Path, class_names: list[str] | None) -> tuple[list[str], list[int], list]:
    """(files, class index of each, class names) under ``folder/<class>/``, as Keras lists
    them; ``class_names`` makes the test split use the training split's classes."""
    import tensorflow as tf  # image_dataset_from_directory lists through tf.io

    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if class_names is not None and found != class_names:
        raise DataUnavailableError(
            f"{folder} holds the class folders {found}, but train/ holds {class_names}: "
            "both splits need the same classes"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Found N files ..."
            listing = keras.utils.image_dataset_from_directory(
                folder, class_names=class_names, shuffle=False, batch_size=None
            )
    except (ValueError, tf.errors.OpError) as error:
        raise DataUnavailableError(
            f"{folder} holds no images in class folders (<class>/*.jpg, png, bmp or gif): {error}"
        ) from None
    names = list(listing.class_names)
    index = {name: i for i, name in enumerate(names)}
    files = list(listing.file_paths)
    return files, [index[Path(file).parent.name] for file in files], names


def _header_size(path: str) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:  # PIL reports unreadable files with many types
        raise ImageError(f"{path}: not an image file PIL can read ({error})") from None
    return height, width


def _common_size(paths: Sequence[str], where: str) -> tuple[int, int]:
    """The one size of every image; mixed sizes are refused, naming them and a file of each."""
    sizes: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
    for path in paths:
        sizes[_header_size(path)].append(path)
    if len(sizes) == 1:
        return next(iter(sizes))
    common = sorted(sizes.items(), key=lambda item: -len(item[1]))
    shown = ", ".join(f"{h}x{w} ({len(files)}, e.g. {files[0]})" for (h, w), files in common)
    raise ConfigError(
        "image_size",
        f"is needed: the images of {where} differ in size (height x width: {shown}); "
        "pass one to resize them all",
    )


def load_folder(
    root: str, image_size: tuple[int, int] | None = None, max_memory_gb: float = 4.0
) -> Dataset:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val/``): the classes are the
    folder names, sorted; images become RGB of ``image_size``, else must all be one size.

    Decoded into memory if both splits fit in ``max_memory_gb``, else streamed (FolderImages).
    """
    _hide_gpus_from_tensorflow()  # Keras lists the files through TensorFlow
    where = f"{FOLDER}{root}"
    folder = Path(root)
    if not folder.is_dir():
        raise DataUnavailableError(f"{where}: no such folder")
    test_folder = next((folder / t for t in TEST_FOLDERS if (folder / t).is_dir()), None)
    if not (folder / "train").is_dir() or test_folder is None:
        found = sorted(p.name for p in folder.iterdir())
        raise DataUnavailableError(
            f"{where} must hold train/ and test/ (or val/), each with one folder of images per "
            f"class; found {', '.join(found) or 'nothing'}"
        )
    train_files, train_labels, names = _list_split(folder / "train", None)
    if len(names) < 2:
        raise DataUnavailableError(
            f"{folder / 'train'} holds {len(names)} class folder(s) {names}; "
            "a classifier needs at least two"
        )
    test_files, test_labels, _ = _list_split(test_folder, names)
    size = tuple(image_size) if image_size else _common_size(train_files + test_files, where)
    train = Split(FolderImages(train_files, size), np.asarray(train_labels, np.int32))
    test = Split(FolderImages(test_files, size), np.asarray(test_labels, np.int32))
    source = "folder (streamed)"
    if (len(train) + len(test)) * size[0] * size[1] * 3 <= max_memory_gb * GIGABYTE:
        train, test = (Split(s.images[np.arange(len(s))], s.labels) for s in (train, test))
        source = "folder"
    # The absolute path, so the name saved in the model finds the data from any folder.
    name = f"{FOLDER}{folder.resolve()}"
    return Dataset(train=train, test=test, source=source, name=name, class_names=tuple(names))


def synthetic_cifar10(train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Dataset:
    """Generated CIFAR-shaped data that a network can learn: each class is a colour pattern.

    Lets anyone run the whole program in a minute, without a GPU or internet. The classes are
    the same for every ``seed`` (a model trained at one seed is scored on the same task at
    another); the seed picks the images: their labels and noise.
    """
    colours = np.random.default_rng(SYNTHETIC_CLASSES_SEED).uniform(0.2, 0.8, size=(10, 3))
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    patterns = []
    for c, colour in enumerate(colours):
        angle = np.pi * c / len(CLASS_NAMES)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) * (1 + c % 3))
        patterns.append(128 + 80 * wave[..., None] * colour)
    patterns = np.stack(patterns)
    rng = np.random.default_rng(seed)

    def make(n: int) -> Split:
        labels = rng.integers(0, len(CLASS_NAMES), size=n).astype(np.int32)
        noise = rng.normal(0, 40, size=(n, 32, 32, 3))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        return Split(images, labels)

    return Dataset(train=make(train_size), test=make(test_size), source="synthetic")


def subset(data: Dataset, train_size: int | None = None, val_size: int = 0) -> Dataset:
    """Hold out the last ``val_size`` training images for validation, then keep the first
    ``train_size`` of the rest. Both checks name the value and the number available."""
    available = len(data.train)
    if not 0 <= val_size < available:
        raise ConfigError("val_size", f"must be between 0 and {available - 1}, got {val_size}")
    train, validation = data.train, None
    if val_size:
        validation = train.take(slice(available - val_size, None))
        train = train.take(slice(0, available - val_size))
    if train_size is not None:
        if not 0 < train_size <= len(train):
            raise ConfigError(
                "train_size",
                f"must be between 1 and {len(train)} (the training images left), got {train_size}",
            )
        train = train.take(slice(0, train_size))
    return dataclasses.replace(data, train=train, validation=validation)


class CifarBatches(keras.utils.PyDataset):
    """Batches for ``model.fit``: shuffled per epoch when ``train`` is true, else in order.

    Call ``set_epoch`` before each epoch (``SetEpoch`` does it); the epoch's permutation comes
    from ``np.random.default_rng([seed, epoch])``.

    For data-parallel runs every batch must split evenly over ``devices``: a short last
    training batch that does not is dropped, and a short last evaluation batch is padded with
    copies of its last image (``predict_logits`` trims the extra rows). With ``shard=(i, n)``
    process ``i`` of ``n`` yields its contiguous slice of each global batch, so the processes
    together see exactly the batches a single process would. ``flip`` mirrors every image
    (flip test-time augmentation, without copying the split).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        train: bool = False,
        seed: int = 0,
        devices: int = 1,
        shard: tuple[int, int] = (0, 1),
        flip: bool = False,
    ):
        super().__init__()
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.devices = devices
        self.shard = shard
        self.flip = flip
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        n = len(self.split)
        self._order = (
            np.random.default_rng([self.seed, epoch]).permutation(n) if self.train else np.arange(n)
        )

    def __len__(self) -> int:
        full, rest = divmod(len(self.split), self.batch_size)
        return full + bool(rest and (not self.train or rest % self.devices == 0))

    def __getitem__(self, index: int):
        batch = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if len(batch) % self.devices:
            batch = np.pad(batch, (0, -len(batch) % self.devices), mode="edge")
        rank, count = self.shard
        mine = batch[rank * len(batch) // count : (rank + 1) * len(batch) // count]
        images = self.split.images[mine]
        return (images[:, :, ::-1] if self.flip else images), self.split.labels[mine]
