"""A folder of images, ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (or ``val/``), as
Keras's ``image_dataset_from_directory`` lists them: held in memory while both splits fit in
``max_memory_gb``, else streamed, so memory holds a batch, not the dataset."""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_resnet.errors import ConfigError, DataUnavailableError
from keras_resnet.trainer.data.common import FOLDER, GIGABYTE, hide_gpus_from_tensorflow
from keras_resnet.trainer.data.splits import Dataset, Split
from keras_resnet.trainer.images import ImageError, load_image

if TYPE_CHECKING:
    from keras_resnet.trainer.data.cache import DecodedCache

TEST_FOLDERS = ("test", "val")  # the first one present is a folder's test split
DECODE_THREADS = 8  # for large reads: PIL releases the GIL for part of each decoding
DECODE_CHUNK = 64  # images a decoding thread takes at a time: fewer are decoded in the caller


class FolderImages:
    """Image files that index like an (N, height, width, 3) uint8 array, decoded when read.

    As with numpy, a slice is a view (nothing is decoded) and an index array is a copy: the
    decoded images, made RGB and resized to ``size`` by ``images.load_image``, which names a
    file it cannot read. With a ``cache`` (``cache.keep_decoded``), image ``i`` is kept in its
    row ``rows[i]`` the first time it is decoded, and read back from there afterwards.
    """

    dtype = np.dtype(np.uint8)

    def __init__(
        self,
        paths: Sequence[str],
        size: tuple[int, int],
        cache: DecodedCache | None = None,
        rows: np.ndarray | None = None,
    ):
        self.paths = np.asarray(paths, dtype=object)
        self.size = tuple(size)
        self.cache = cache
        self.rows = rows

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self.size, 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> FolderImages | np.ndarray:
        if isinstance(index, slice):
            rows = None if self.rows is None else self.rows[index]
            return FolderImages(self.paths[index], self.size, self.cache, rows)
        index = np.asarray(index)
        paths = self.paths[index].reshape(-1)
        if self.cache is None:
            return decode(paths, self.size)
        return self.cache.read(self.rows[index].reshape(-1), paths)


def decode(paths: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The files ``paths`` as an (N, height, width, 3) uint8 array: a read of up to
    ``DECODE_CHUNK`` in this thread, a larger one in chunks on the decoding threads."""
    out = np.empty((len(paths), *size, 3), np.uint8)
    starts = range(0, len(paths), DECODE_CHUNK)
    if len(starts) <= 1:
        _decode(paths, size, out)
    else:
        chunks = [(paths[i : i + DECODE_CHUNK], out[i : i + DECODE_CHUNK]) for i in starts]
        for _ in _decoders().map(lambda chunk: _decode(chunk[0], size, chunk[1]), chunks):
            pass  # each chunk fills its part of out; map re-raises a chunk's error
    return out


def _decode(paths: np.ndarray, size: tuple[int, int], out: np.ndarray) -> None:
    """Decode ``paths`` into ``out`` one after another: a thread for each image of a small
    read cost more than decoding it (1.2-1.6 against 0.9 ms for 8 32x32 PNGs on 2 cores)."""
    for i, path in enumerate(paths):
        out[i] = load_image(path, size)


@functools.cache
def _decoders() -> ThreadPoolExecutor:
    """One pool for every large read: starting its threads for each read cost more than
    decoding a small batch (2 ms of 3.5 for 8 32x32 PNGs on 2 cores)."""
    return ThreadPoolExecutor(min(DECODE_THREADS, os.cpu_count() or 1), "decode")


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
    hide_gpus_from_tensorflow()  # Keras lists the files through TensorFlow
    where = f"{FOLDER}{root}"
    folder = Path(root)
    if not folder.is_dir():
        raise ConfigError("dataset", f"is {where}, which is not a folder")
    test_folder = next((folder / t for t in TEST_FOLDERS if (folder / t).is_dir()), None)
    if not (folder / "train").is_dir() or test_folder is None:
        found = sorted(p.name for p in folder.iterdir())
        raise ConfigError(
            "dataset",
            f"is {where}, which must hold train/ and test/ (or val/), each with one folder of "
            f"images per class; found {', '.join(found[:10]) or 'nothing'}"
            + (f" and {len(found) - 10} more" if len(found) > 10 else ""),
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
