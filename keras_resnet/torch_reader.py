"""Reading PyTorch checkpoints without PyTorch, and without running any code they hold.

``torch.save`` writes a pickle whose tensors point at raw storages: in a zip archive since
torch 1.6 (``ARCHIVE/data.pkl`` and ``ARCHIVE/data/KEY``), before that as one stream (a magic
number, the protocol version, the machine's type sizes, the pickle, the storage keys, then each
storage as a little-endian int64 element count and its bytes). A pickle can call any Python
function it names, so this reader unpickles with a ``find_class`` that admits only what a
state_dict needs (rebuilding tensors from storages, ``OrderedDict``, plain values) and refuses
anything else, by name, before it can run. Tensors come back as numpy arrays, views of their
storage with its offset and strides, so tensors that share a storage share memory as in torch.
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import io
import os
import pickle
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from keras_resnet.errors import ModelFileError, UnsafeCheckpointError

SUFFIXES = (".pth", ".pt", ".th")  # what PyTorch checkpoints are named (.th: akamaster's)
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_PROTOCOL_VERSION = 1001  # torch.serialization.PROTOCOL_VERSION
_INT64 = 8  # bytes of the element count before each storage in the legacy format
# The keys under which PyTorch training scripts save the state_dict: kuangliu/pytorch-cifar's
# (and the notes') ``{'net': ...}``, akamaster/pytorch_resnet_cifar10's ``{'state_dict': ...}``.
CHECKPOINT_KEYS = ("net", "state_dict")


@dataclasses.dataclass(frozen=True, slots=True)
class _DType:
    """A torch storage class (``torch.FloatStorage``) or dtype (``torch.uint16``) in a pickle,
    as the numpy dtype its elements have."""

    dtype: np.dtype


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,  # bytes; _rebuild_tensor_v3 gives their dtype
}
# The dtypes torch pickles by name beside an untyped storage (``torch.storage._new_dtypes``).
_TENSOR_DTYPES = {
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
}
_TORCH_TYPES = {
    name: _DType(np.dtype(dtype)) for name, dtype in (_STORAGE_DTYPES | _TENSOR_DTYPES).items()
}
_PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("torch", "Size"): tuple,
}


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object ``torch.save`` wrote to ``path``, its tensors as numpy arrays.

    An ``UnsafeCheckpointError`` (a ``ModelFileError``) names the first global the file asks
    for beyond tensors and plain containers; a ``ModelFileError`` says why any other file
    cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{str(path)!r} is not a file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _Reader(path).read_zip(archive)
        with open(path, "rb") as file:
            return _Reader(path).read_legacy(file, path.stat().st_size)
    except UnsafeCheckpointError:
        raise
    except ModelFileError as error:
        raise ModelFileError(f"cannot read PyTorch checkpoint {str(path)!r}: {error}") from error
    except (
        pickle.UnpicklingError,
        EOFError,
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        zipfile.BadZipFile,
    ) as error:  # a damaged file, or not a checkpoint: one line naming it
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise ModelFileError(f"cannot read PyTorch checkpoint {str(path)!r}: {reason}") from error


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict in a PyTorch checkpoint: the file's mapping of names to tensors, or the
    one it keeps under ``'net'`` or ``'state_dict'`` (``CHECKPOINT_KEYS``)."""
    checkpoint = read_checkpoint(path)
    for key in CHECKPOINT_KEYS:
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
    if not (
        isinstance(checkpoint, Mapping)
        and checkpoint
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in checkpoint.items())
    ):
        raise ModelFileError(
            f"{str(path)!r} holds no state_dict: expected a mapping of names to tensors, or one "
            f"under {' or '.join(map(repr, CHECKPOINT_KEYS))}"
        )
    return dict(checkpoint)


class _Unpickler(pickle.Unpickler):
    """An unpickler whose globals are only those ``allowed`` names; any other is refused."""

    def __init__(
        self,
        file: BinaryIO,
        path: Path,
        allowed: Mapping[tuple[str, str], Any],
        persistent_load: Callable[[Any], Any] | None = None,
    ):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._allowed = allowed
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Python 2's names, as pickle maps them for protocols 0-2 (torch.save writes 2).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[module, name]
        except (KeyError, TypeError):  # TypeError: a name that is not a string
            raise UnsafeCheckpointError(str(self._path), f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError("a persistent id where none is expected")
        return self._persistent_load(pid)


class _Reader:
    """One checkpoint's storages, and the functions its pickle may call to rebuild tensors.

    The rebuilding functions are bound methods, so a hostile pickle cannot change them for
    later files (a bound method takes no attributes).
    """

    def __init__(self, path: Path):
        self.path = path
        self.storages: dict[Any, np.ndarray] = {}
        rebuild = {
            "_rebuild_tensor": _tensor,  # torch < 1.0
            "_rebuild_tensor_v2": self._rebuild_tensor_v2,
            "_rebuild_tensor_v3": self._rebuild_tensor_v3,
            "_rebuild_parameter": self._rebuild_parameter,
            "_rebuild_parameter_with_state": self._rebuild_parameter_with_state,
        }
        self.allowed = (
            _PLAIN_GLOBALS
            | {("torch._utils", name): function for name, function in rebuild.items()}
            | {("torch", name): marker for name, marker in _TORCH_TYPES.items()}
            | {("torch.storage", "UntypedStorage"): _TORCH_TYPES["UntypedStorage"]}
            | {("_codecs", "encode"): self._encode}
        )

    def _unpickler(self, file: BinaryIO, persistent_load=None) -> _Unpickler:
        return _Unpickler(file, self.path, self.allowed, persistent_load)

    # The zip format (torch >= 1.6).
    def read_zip(self, archive: zipfile.ZipFile) -> Any:
        pickles = [name for name in archive.namelist() if name.count("/") == 1]
        pickles = [name for name in pickles if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ModelFileError("a zip archive without one ARCHIVE/data.pkl is not a checkpoint")
        prefix = pickles[0].removesuffix("data.pkl")
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise ModelFileError(f"unknown byte order {byteorder!r}")

        def persistent_load(pid: Any) -> np.ndarray:
            storage_type, key, _location, numel = _storage_id(pid, 4)
            if key not in self.storages:
                record = f"{prefix}data/{key}"
                size = archive.getinfo(record).file_size
                if size != numel * storage_type.dtype.itemsize:
                    raise ModelFileError(f"{record} holds {size} bytes, not {numel} elements")
                data = np.frombuffer(bytearray(archive.read(record)), storage_type.dtype)
                self.storages[key] = _native(data, byteorder)
            return self.storages[key]

        return self._unpickler(io.BytesIO(archive.read(pickles[0])), persistent_load).load()

    # The legacy format (torch.save(..., _use_new_zipfile_serialization=False), torch < 1.6).
    def read_legacy(self, file: BinaryIO, file_size: int) -> Any:
        if self._unpickler(file).load() != _MAGIC_NUMBER:
            raise ModelFileError("not a torch.save file (no magic number)")
        version = self._unpickler(file).load()
        if version != _PROTOCOL_VERSION:
            raise ModelFileError(f"unknown protocol version {version!r}")
        self._unpickler(file).load()  # the saving machine's type sizes

        def persistent_load(pid: Any) -> np.ndarray:
            storage_type, key, _location, numel, view = _storage_id(pid, 5)
            if key not in self.storages:
                if numel * storage_type.dtype.itemsize > file_size:
                    raise ModelFileError(f"storage {key!r} is larger than the file")
                self.storages[key] = np.zeros(numel, storage_type.dtype)  # filled below
            storage = self.storages[key]
            if view is None:
                return storage
            _view_key, offset, size = view
            if not (_is_count(offset) and _is_count(size) and offset + size <= storage.size):
                raise ModelFileError(f"a view outside storage {key!r}")
            return storage[offset : offset + size]

        result = self._unpickler(file, persistent_load).load()
        keys = self._unpickler(file).load()
        if not isinstance(keys, list) or set(keys) != set(self.storages):
            raise ModelFileError("its storage keys do not match its tensors")
        for key in keys:
            storage = self.storages[key]
            header = file.read(_INT64)
            data = file.read(storage.nbytes)
            if len(header) != _INT64 or len(data) != storage.nbytes:
                raise ModelFileError("it is truncated")
            if int.from_bytes(header, "little") != storage.size:
                raise ModelFileError(f"storage {key!r} holds another number of elements")
            storage[:] = _native(np.frombuffer(data, storage.dtype), "little")
        return result

    # What the pickle may call.
    def _rebuild_tensor_v2(
        self, storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
    ) -> np.ndarray:
        return _tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor_v3(
        self,
        storage,
        storage_offset,
        size,
        stride,
        requires_grad,
        backward_hooks,
        dtype,
        metadata=None,
    ) -> np.ndarray:
        if not (isinstance(dtype, _DType) and isinstance(storage, np.ndarray)):
            raise ModelFileError("a tensor without a dtype")
        if storage.dtype != np.uint8 or storage.size % dtype.dtype.itemsize:
            raise ModelFileError(f"a {dtype.dtype} tensor on a storage of {storage.dtype}")
        return _tensor(storage.view(dtype.dtype), storage_offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks) -> np.ndarray:
        return data

    def _rebuild_parameter_with_state(
        self, data, requires_grad, backward_hooks, state
    ) -> np.ndarray:
        return data

    def _encode(self, text, encoding="latin1") -> bytes:
        """Protocol 2 pickles ``bytes`` as ``_codecs.encode(text, 'latin1')``; nothing else."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise UnsafeCheckpointError(str(self.path), f"_codecs.encode(..., {encoding!r})")
        return text.encode("latin1")


def _storage_id(pid: Any, fields: int) -> tuple:
    """The fields of a ``('storage', type, key, location, numel[, view])`` persistent id."""
    if not (isinstance(pid, tuple) and len(pid) == fields + 1):
        raise ModelFileError(f"unknown persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage":
        raise ModelFileError(f"it holds a pickled {kind!r}, not tensors (a whole nn.Module?)")
    storage_type, numel = pid[1], pid[4]
    if not isinstance(storage_type, _DType) or not _is_count(numel):
        raise ModelFileError(f"unknown storage {pid[1:5]!r}")
    return pid[1:]


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _native(data: np.ndarray, byteorder: str) -> np.ndarray:
    """``data`` read in ``byteorder``, in this machine's."""
    if byteorder == sys.byteorder or data.dtype.itemsize == 1:
        return data
    return data.byteswap()


def _tensor(storage: Any, offset: Any, size: Any, stride: Any) -> np.ndarray:
    """The view of ``storage`` (elements) that ``torch.Tensor.set_`` would make, refused when
    any of its elements lies outside the storage."""
    if not (
        isinstance(storage, np.ndarray)
        and storage.ndim == 1
        and _is_count(offset)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(map(_is_count, size + stride))
    ):
        raise ModelFileError("a tensor with an invalid storage, offset, size or stride")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ModelFileError(f"a tensor reaching element {last} of a storage of {storage.size}")
    return np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(step * storage.itemsize for step in stride)
    )
