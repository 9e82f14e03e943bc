"""Published weights: ``build(name, weights="cifar10")`` and ``NAME:cifar10`` on the command line.

The 2015 paper's CIFAR-10 ResNets as akamaster/pytorch_resnet_cifar10 trained and published
them (BSD 2-Clause licence), one line each below. Each is fetched once from its published URL
into Keras's cache, ``$KERAS_HOME/models/`` (default ``~/.keras/models/``), where a copy of the
file also works offline; it is used only when its SHA-256 begins with the 8 hex digits in its
name. The checkpoints are PyTorch's, read by ``torch_reader`` without PyTorch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from keras_resnet.downloads import check_reachable
from keras_resnet.errors import ConfigError, DataUnavailableError, ModelFileError
from keras_resnet.torch_reader import SUFFIXES as TORCH_SUFFIXES

if TYPE_CHECKING:  # Keras comes when weights are fetched or loaded: `list` reads the table only
    import keras

SOURCE = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
REACHABLE_SECONDS = 3.0  # offline, the command fails within this (and never waits on get_file)
KERAS_SUFFIXES = (".keras", ".weights.h5")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One published file and the test accuracy (%) its authors report for it."""

    file: str
    published_accuracy: float

    @property
    def url(self) -> str:
        return SOURCE + self.file

    @property
    def sha256_prefix(self) -> str:
        """The 8 hex digits after the dash in the file's name: its SHA-256 starts with them."""
        return self.file.rpartition("-")[2].partition(".")[0]


@dataclasses.dataclass(frozen=True)
class Weights:
    """A set of published weights: the dataset they were trained on, with its class names,
    the (mean, std) per channel on the 0-1 scale the images were normalised with, and a
    checkpoint per model."""

    dataset: str
    class_names: tuple[str, ...]
    normalization: tuple[tuple[float, ...], tuple[float, ...]]
    checkpoints: dict[str, Checkpoint]


CIFAR10_CLASS_NAMES = (
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
WEIGHTS = {
    "cifar10": Weights(
        dataset="cifar10",
        class_names=CIFAR10_CLASS_NAMES,
        # akamaster normalised CIFAR-10 with ImageNet's statistics.
        normalization=((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        checkpoints={
            # best_prec1 inside the first four; the README's test errors for 110 and 1202.
            "resnet20": Checkpoint("resnet20-12fca82f.th", 91.78),
            "resnet32": Checkpoint("resnet32-d509ac18.th", 92.78),
            "resnet44": Checkpoint("resnet44-014dd654.th", 93.14),
            "resnet56": Checkpoint("resnet56-4bfd9763.th", 93.62),
            "resnet110": Checkpoint("resnet110-1d1ed7c2.th", 93.68),
            "resnet1202": Checkpoint("resnet1202-f3b1deed.th", 93.82),
        },
    ),
}


def weights_of(name: str) -> list[str]:
    """The published weights of model ``name`` (``["cifar10"]`` or ``[]``)."""
    return [key for key, weights in WEIGHTS.items() if name in weights.checkpoints]


def published(name: str, weights: str) -> Weights:
    """The published ``weights`` for model ``name``, or a ``ConfigError`` naming the models
    that have them."""
    known = WEIGHTS.get(weights) if isinstance(weights, str) else None
    if known is not None and name in known.checkpoints:
        return known
    if known is not None:
        raise ConfigError(
            "weights",
            f"{weights!r} is published for {', '.join(known.checkpoints)}; {name!r} has no "
            "such weights",
        )
    raise ConfigError(
        "weights",
        f"must be None, the name of published weights ({', '.join(map(repr, WEIGHTS))}: "
        f"{', '.join(_models_with_weights())}), or the path of a "
        f"{', '.join(KERAS_SUFFIXES + TORCH_SUFFIXES)} file; got {weights!r}",
    )


def _models_with_weights() -> list[str]:
    return list(dict.fromkeys(name for w in WEIGHTS.values() for name in w.checkpoints))


def is_weights_file(weights: str | os.PathLike) -> bool:
    """Whether ``weights`` names a file ``load_weights`` reads (by its suffix)."""
    return str(weights).endswith(KERAS_SUFFIXES + TORCH_SUFFIXES)


def cache_path(checkpoint: Checkpoint) -> Path:
    """Where Keras's cache keeps ``checkpoint``: ``$KERAS_HOME/models/FILE``."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    return Path(home) / "models" / checkpoint.file


def fetch(name: str, weights: str) -> Path:
    """The cached checkpoint of model ``name``'s published ``weights``, downloaded first if it
    is not there yet; refused unless its SHA-256 matches the name."""
    checkpoint = published(name, weights).checkpoints[name]
    path = cache_path(checkpoint)
    if path.exists():
        _check_hash(path, checkpoint)
    else:
        _download(checkpoint, path)
    return path


def _download(checkpoint: Checkpoint, path: Path) -> None:
    """Download ``checkpoint`` to ``path``: into a temporary file beside it, which becomes
    ``path`` only once its hash matches."""
    offline = f"to use it offline, download it elsewhere and copy it to {path}"
    try:
        check_reachable(checkpoint.url, REACHABLE_SECONDS)
    except ConnectionError as error:
        raise DataUnavailableError(f"{error}; {offline}") from error
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataUnavailableError(
            f"cannot write {checkpoint.url} to {path.parent} ({error}); {offline}"
        ) from error
    import keras

    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        try:
            downloaded = keras.utils.get_file(
                partial.name,
                checkpoint.url,
                cache_dir=str(path.parent.parent),
                cache_subdir=path.parent.name,
                force_download=True,
            )
        except Exception as error:  # get_file raises a bare Exception for HTTP and URL errors
            raise DataUnavailableError(f"{error}; {offline}") from error
        _check_hash(Path(downloaded), checkpoint)
        os.replace(downloaded, path)
    finally:
        partial.unlink(missing_ok=True)


def _check_hash(path: Path, checkpoint: Checkpoint) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    if not digest.hexdigest().startswith(checkpoint.sha256_prefix):
        raise ModelFileError(
            f"{path} is not the published {checkpoint.file}: its SHA-256 begins "
            f"{digest.hexdigest()[:8]}, not {checkpoint.sha256_prefix}; it was not used. Delete "
            f"it to download {checkpoint.url} again, or copy the published file there"
        )


def resolve(name: str, weights: str | os.PathLike) -> Path:
    """The file ``weights`` names for model ``name``: published weights by their name (fetched
    into the cache first if needed), or a ``.keras``, ``.weights.h5`` or PyTorch checkpoint
    by its path."""
    if not is_weights_file(weights):
        return fetch(name, str(weights))
    if not Path(weights).is_file():
        raise ModelFileError(f"weights {str(weights)!r} is not a file")
    return Path(weights)


def load_weights(model: keras.Model, path: Path, *, skip_head: bool) -> None:
    """Load the weights file ``path`` (from ``resolve``) into ``model``; ``skip_head`` leaves a
    PyTorch checkpoint's classifier out (a model without one, or with other classes)."""
    from keras_resnet.torch_weights import load_torch_weights

    try:
        if path.name.endswith(TORCH_SUFFIXES):
            load_torch_weights(model, path, skip_head=skip_head)
        else:
            model.load_weights(path)
    except ValueError as error:  # another architecture, or a damaged Keras file
        reason = " ".join(str(error).split())
        raise ModelFileError(f"cannot load {str(path)!r} into {model.name}: {reason}") from error
