"""Read users' own pictures for ``predict``: any size or format PIL reads, as the model's RGB input.

Every way a file can fail becomes an ``ImageError`` naming the file, so the command line can
print one clear line instead of a PIL traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_resnet.errors import DataUnavailableError

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageError(DataUnavailableError):
    """An image could not be used; the message names the file and says why."""

    exit_code = 2  # the user's own file: bad input, like a bad flag


def check_image_file(path: str | os.PathLike) -> None:
    """An ``ImageError`` unless ``path`` is a regular file: a pipe would block the reader."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.stat(path).st_mode):
            return  # one system call for the usual case: a streamed folder checks every read
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image")
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ImageError(f"{path}: not a regular file")


def load_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Read ``path`` as a ``size`` = (height, width) uint8 RGB array.

    Transparent pixels are composited onto white (a cut-out object on white looks like a photo;
    on black it would not), EXIF rotation is applied, and only the first frame of an animation
    is used. Images above ``PIL.Image.MAX_IMAGE_PIXELS`` are refused as decompression bombs.
    """
    height, width = size
    check_image_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # PIL decodes lazily: force it here so truncation is caught here
                ImageOps.exif_transpose(img, in_place=True)  # our own image: no copy needed
                rgb = _to_rgb(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: too large to open safely ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        # PIL's decoders report damaged data with any of these.
        raise ImageError(f"{path}: could not be decoded, damaged or truncated? ({exc})") from None
    if rgb.size != (width, height):
        # reducing_gap shrinks large images with a box filter first: fast and alias-free.
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, compositing transparency onto white; an RGB image is
    returned as it is (each copy costs a streamed folder a few percent of its decoding)."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        # PIL's own conversion clips 16-bit values at 255, turning the picture white.
        img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from the models' logits; subtracting the max keeps ``exp`` finite."""
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def top_k(
    probabilities: np.ndarray, class_names: Sequence[str], k: int = 3
) -> list[tuple[str, float]]:
    """The ``k`` likeliest classes as (name, probability), likeliest first."""
    probabilities = np.asarray(probabilities).reshape(-1)
    if len(probabilities) != len(class_names):
        raise ValueError(f"{len(probabilities)} probabilities for {len(class_names)} classes")
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]
