"""A streamed folder decoded once: each image's pixels as decoding gives them (RGB, resized to
the run's size; the model augments and normalises them later) are kept in a file of the run
folder the first time the run reads the image, so that later epochs and a resumed run read
them back instead of decoding the file again.

The file is a ``.npy`` array with a row (key, pixels) per image of the run's streamed splits,
memory-mapped and filled in place. Nothing marks a row as filled but its key: a hash of the
image file's identity (path, inode, size, modification and change times, Pillow's version) and
of the pixels beside it. A row is used only when its key matches, so a row that a kill or a
power cut left half written, or one of a file changed since, is decoded again: never used.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import PIL

from keras_resnet.trainer import io
from keras_resnet.trainer.data.common import GIGABYTE
from keras_resnet.trainer.data.folders import FolderImages, decode
from keras_resnet.trainer.data.splits import Dataset, Split

SPARE = GIGABYTE  # free disk a new cache leaves for the run's checkpoints and models
KEY, PIXELS = "key", "pixels"  # a row's fields; a key of 0 is a row never written


def row_type(size: tuple[int, int]) -> np.dtype:
    """A row of the cache: the key, then the image's pixels."""
    return np.dtype([(KEY, "<u8"), (PIXELS, np.uint8, (*size, 3))])


class DecodedCache:
    """The memory-mapped rows of a cache file, and which of them this process has checked or
    written (``known``): only the others need their key checked."""

    def __init__(self, rows: np.ndarray):
        self.keys = rows[KEY]
        self.pixels = rows[PIXELS]
        self.size = self.pixels.shape[1:3]
        self.known = np.zeros(len(rows), bool)

    @property
    def nbytes(self) -> int:
        return len(self.keys) * row_type(self.size).itemsize

    @classmethod
    def open(cls, path: Path, images: int, size: tuple[int, int]) -> DecodedCache:
        """The cache file at ``path`` when it holds ``images`` rows of ``size``, else a new one
        in its place, once the disk has room for it and ``SPARE`` besides. An ``OSError`` when
        it has not (its ``strerror`` says so) or the file cannot be made."""
        dtype = row_type(size)
        try:
            return cls(_map(path, dtype, images))
        except (OSError, ValueError):  # none yet, or one of other images or damaged
            pass
        need = images * dtype.itemsize
        free = free_space(path.parent)
        if free < need + SPARE:
            raise OSError(
                errno.ENOSPC,
                f"{size_text(free)} free on its disk; it needs {size_text(need)} and "
                f"{size_text(SPARE)} to spare",
            )
        _create(path, dtype, images)
        return cls(_map(path, dtype, images))

    def read(self, rows: np.ndarray, paths: np.ndarray) -> np.ndarray:
        """The images of ``paths``, whose rows are ``rows``: decoded and kept where a row does
        not hold them yet."""
        missing = ~self.known[rows]
        if missing.any():
            self._fill(rows[missing], paths[missing])
        return self.pixels[rows]

    def _fill(self, rows: np.ndarray, paths: np.ndarray) -> None:
        """Check the rows this process has not seen; decode the images of those whose key does
        not match and write them."""
        rows, first = np.unique(rows, return_index=True)  # a padded batch repeats its last
        paths = paths[first]
        # Taken before decoding: a file changed after it gets a key that will not match.
        found = [_identity(path) for path in paths]
        stale = [i for i, identity in enumerate(found) if not self._holds(rows[i], identity)]
        images = decode(paths[stale], self.size)  # an ImageError names a file it cannot read
        for i, image in zip(stale, images, strict=True):
            if found[i] is not None:
                self.pixels[rows[i]] = image
                self.keys[rows[i]] = _key(found[i], image)  # written last: it vouches for them
        self.known[[row for row, seen in zip(rows, found, strict=True) if seen is not None]] = True

    def _holds(self, row: int, identity: bytes | None) -> bool:
        key = int(self.keys[row])
        return identity is not None and key != 0 and key == _key(identity, self.pixels[row])


def keep_decoded(data: Dataset, path: Path) -> Dataset:
    """``data`` with its streamed splits (training, validation, test: a row of the cache for
    each image) read through the cache file at ``path``; ``DecodedCache.open``'s ``OSError``
    when there is none and none can be made."""
    streamed = [
        (name, split)
        for name in ("train", "validation", "test")
        if (split := getattr(data, name)) is not None and isinstance(split.images, FolderImages)
    ]
    size = data.image_shape[:2]
    cache = DecodedCache.open(path, sum(len(split) for _, split in streamed), size)
    replaced, start = {}, 0
    for name, split in streamed:
        rows = np.arange(start, start + len(split))
        replaced[name] = Split(FolderImages(split.images.paths, size, cache, rows), split.labels)
        start += len(split)
    return dataclasses.replace(data, **replaced)


def free_space(folder: Path) -> int:
    """Bytes free on ``folder``'s disk for this user."""
    return shutil.disk_usage(folder).free


def size_text(nbytes: int) -> str:
    """``nbytes`` for the log: GB, or MB below a tenth of one."""
    if nbytes >= GIGABYTE / 10:
        return f"{nbytes / GIGABYTE:.1f} GB"
    return f"{nbytes / 2**20:.1f} MB"


def _identity(path: str) -> bytes | None:
    """What changes when the file does, or None when it cannot be read (decoding names why)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    fields = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return "\0".join(map(str, (*fields, PIL.__version__))).encode()


def _key(identity: bytes, pixels: np.ndarray) -> int:
    """A row's key: 8 bytes of SHA-256 (fast on CPUs with SHA instructions)."""
    digest = hashlib.sha256(identity)
    digest.update(pixels)
    return int.from_bytes(digest.digest()[:8], "little")


def _map(path: Path, dtype: np.dtype, images: int) -> np.ndarray:
    """The rows of the cache file at ``path``, never through a symbolic link; a ValueError when
    it is not a cache of ``images`` rows of ``dtype``."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "r+b") as file:
        if np.lib.format.read_magic(file) != (1, 0):
            raise ValueError(f"{path}: not a cache file")
        shape, fortran_order, found = np.lib.format.read_array_header_1_0(file)
        if shape != (images,) or fortran_order or found != dtype:
            raise ValueError(f"{path}: a cache of other images")
        if os.fstat(fd).st_size != file.tell() + images * dtype.itemsize:
            raise ValueError(f"{path}: cut short")  # numpy would extend it with a hole
        # The map keeps its own handle on the file.
        return np.asarray(np.memmap(file, dtype, "r+", offset=file.tell(), shape=(images,)))


def _create(path: Path, dtype: np.dtype, images: int) -> None:
    """A cache file of ``images`` empty rows at ``path``, whole or not at all. Its blocks are
    allocated now: a write into a memory-mapped hole on a full disk would kill the process
    (SIGBUS) instead of raising."""
    with io.atomic_path(path) as tmp, open(tmp, "r+b") as file:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(file, header | {"shape": (images,)})
        file.flush()
        size = file.tell() + images * dtype.itemsize
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(file.fileno(), 0, size)
        else:  # macOS: a sparse file
            os.ftruncate(file.fileno(), size)
