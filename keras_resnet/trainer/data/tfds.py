"""A tfds image-classification dataset read once into uint8 arrays (CIFAR-10 is 150 MB), with
the checks that make a missing dataset fail in seconds and leave a foreign data_dir alone."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_resnet.downloads import check_reachable
from keras_resnet.errors import ConfigError, DataUnavailableError
from keras_resnet.trainer.data.common import FOLDER, GIGABYTE, hide_gpus_from_tensorflow
from keras_resnet.trainer.data.splits import Dataset, Split

READ_BATCH = 10_000  # tfds examples per batch: batch_size=-1 needs the split size first


def _is_tfds_folder(path: Path) -> bool:
    """A tfds data_dir holds ``downloads/`` or ``<dataset>/[<config>/]<version>/`` folders
    with a ``dataset_info.json``."""
    if path.name == "downloads":
        return True
    return any(path.glob("*/dataset_info.json")) or any(path.glob("*/*/dataset_info.json"))


def check_data_dir(data_dir: str, name: str) -> None:
    """Refuse a ``data_dir`` that tfds would have to write into for the dataset ``name`` but
    that is not tfds's: a file, or a folder holding anything other than tfds datasets. Missing
    or empty is fine."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise DataUnavailableError(
            f"data_dir={data_dir!r} is a file, not a folder: pass the folder that holds "
            f"the dataset's folder ({name}/)"
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
            f"data_dir={data_dir!r} does not hold a tfds layout ({name}/<version>/...), so "
            f"nothing was downloaded into it; found {shown}. Pass the folder that holds {name}/ "
            "(the one given to tfds.load as data_dir), or an empty or new folder to download into."
        )


def download_url(builder) -> str:
    """The address a tfds builder downloads from: cifar10's names it; for other datasets (and
    if that moves) the dataset's homepage, whose host is usually the download's too."""
    cifar_info = getattr(builder, "_cifar_info", None)
    return getattr(cifar_info, "url", None) or builder.info.homepage


def _prepare_check(builder, data_dir: str | None) -> None:
    """Before tfds writes anything: when the dataset is not prepared, the data_dir must be
    tfds's (or new) and the download host reachable."""
    if builder.is_prepared():
        return
    if data_dir is not None:
        check_data_dir(data_dir, builder.info.name)
    check_reachable(download_url(builder))


@contextlib.contextmanager
def _without_tfds_warnings() -> Iterator[None]:
    """Hide the warnings tfds logs while it looks for a dataset that is not prepared yet
    ("Variant folder ... has no dataset_info.json"): our own message says what is missing."""
    from absl import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


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
    except (ValueError, AssertionError, TypeError) as error:  # a bad /config, :version, kwargs
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(
            "dataset",
            f"{name!r} names no dataset tfds can build ({reason}); give NAME[/CONFIG][:VERSION] "
            f"of a tfds dataset, or {FOLDER}PATH",
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
    hide_gpus_from_tensorflow()
    with _without_tfds_warnings():
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
        with _without_tfds_warnings():
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
