"""CIFAR-10 from tensorflow-datasets, held in memory, and its batches for ``model.fit``.

CIFAR-10 is 150 MB, so both splits are read once into uint8 arrays. Every epoch's order
follows from ``(seed, epoch)`` alone, so a resumed run sees exactly the data an unbroken one
would have. Augmentation and normalisation happen inside the model (``RandomCropFlip`` and
``build``'s ``input_normalization``), so batches stay uint8 until they reach the device and the
host does no per-pixel work.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import keras
import numpy as np

from keras_resnet.errors import ConfigError, DataUnavailableError

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


@dataclasses.dataclass
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass
class Cifar10:
    train: Split
    test: Split
    validation: Split | None = None
    source: str = "tfds"


def _hide_gpus_from_tensorflow() -> None:
    """tfds reads through TensorFlow; it must never reserve GPU memory that JAX needs."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            "Reading CIFAR-10 needs TensorFlow (tensorflow-cpu), which is not installed: "
            "pip install -r requirements.txt, or train on --synthetic data."
        ) from error
    tf.config.set_visible_devices([], "GPU")


def _read_tfds_split(split: str, data_dir: str | None) -> Split:
    import tensorflow_datasets as tfds

    # Read in fixed-size batches: batch_size=-1 needs the split size from metadata.
    dataset = tfds.load(
        "cifar10", split=split, data_dir=data_dir, as_supervised=True, batch_size=10_000
    )
    images, labels = [], []
    for x, y in tfds.as_numpy(dataset):
        images.append(x)
        labels.append(y)
    if not images:
        raise DataUnavailableError(f"The cifar10 {split!r} split in data_dir={data_dir!r} is empty")
    return Split(np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32))


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
            f"data_dir={data_dir!r} is a file, not a folder: pass the folder that holds cifar10/"
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
    """The address tfds's cifar10 builder downloads from (its homepage if that moves)."""
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


def _prepare_check(data_dir: str | None) -> None:
    """Before tfds writes anything: when cifar10 is not prepared, the data_dir must be tfds's
    (or new) and the download host reachable."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=data_dir)
    if builder.is_prepared():
        return
    if data_dir is not None:
        check_data_dir(data_dir)
    check_reachable(download_url(builder))


def load_cifar10(data_dir: str | None = None) -> Cifar10:
    """Both splits of tfds's ``cifar10`` as arrays; download them if tfds can."""
    _hide_gpus_from_tensorflow()
    try:
        _prepare_check(data_dir)
        return Cifar10(
            train=_read_tfds_split("train", data_dir), test=_read_tfds_split("test", data_dir)
        )
    except DataUnavailableError:
        raise
    except Exception as error:  # tfds raises many types: network, missing files, bad checksums
        where = f"data_dir={data_dir!r}" if data_dir else "tfds's default data_dir"
        raise DataUnavailableError(
            f"Could not load CIFAR-10: tried tfds.load('cifar10') from {where}, downloading it "
            f"if missing, and got {type(error).__name__}: {error}\n"
            "Fix: on a machine with internet run "
            "`python -c \"import tensorflow_datasets as tfds; tfds.load('cifar10', "
            "data_dir='DIR')\"`, copy DIR here and pass --data-dir DIR; "
            "or try the program on generated data with --synthetic."
        ) from error


def synthetic_cifar10(train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Cifar10:
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

    return Cifar10(train=make(train_size), test=make(test_size), source="synthetic")


def subset(data: Cifar10, train_size: int | None = None, val_size: int = 0) -> Cifar10:
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
    return Cifar10(train=train, test=data.test, validation=validation, source=data.source)


class CifarBatches(keras.utils.PyDataset):
    """Batches for ``model.fit``: shuffled per epoch when ``train`` is true, else in order.

    Call ``set_epoch`` before each epoch (``SetEpoch`` does it); the epoch's permutation comes
    from ``np.random.default_rng([seed, epoch])``.

    For data-parallel runs every batch must split evenly over ``devices``: a short last
    training batch that does not is dropped, and a short last evaluation batch is padded with
    copies of its last image (``predict_logits`` trims the extra rows). With ``shard=(i, n)``
    process ``i`` of ``n`` yields its contiguous slice of each global batch, so the processes
    together see exactly the batches a single process would.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        train: bool = False,
        seed: int = 0,
        devices: int = 1,
        shard: tuple[int, int] = (0, 1),
    ):
        super().__init__()
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.devices = devices
        self.shard = shard
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
        return self.split.images[mine], self.split.labels[mine]
