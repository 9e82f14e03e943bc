"""torch_reader: PyTorch checkpoints read without PyTorch give what torch.load gives, and a
pickle that would run code is refused before it runs."""

import collections
import os
import pickle
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from helpers import PUBLISHED, run_python

from keras_resnet import torch_reader
from keras_resnet.errors import ModelFileError, UnsafeCheckpointError

torch = pytest.importorskip("torch")

CHECKPOINTS = sorted(PUBLISHED.glob("resnet*.th")) if PUBLISHED.is_dir() else []
FORMATS = {"zip": True, "legacy": False}


def save(obj, path: Path, form: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[form])
    return path


def as_numpy(tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: compare the bits
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def assert_same(ours, theirs) -> None:
    """``ours`` (the reader's) equals ``theirs`` (torch.load's): same containers, same keys,
    tensors of the same dtype, shape and values."""
    if isinstance(theirs, torch.Tensor):
        expected = as_numpy(theirs)
        assert isinstance(ours, np.ndarray)
        assert (ours.dtype, ours.shape) == (expected.dtype, expected.shape)
        np.testing.assert_array_equal(ours, expected)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, list | tuple):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)
    else:
        assert ours == theirs and type(ours) is type(theirs)


def every_kind_of_tensor(form: str) -> dict:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=generator)
    shared = torch.arange(12, dtype=torch.int64)
    tensors = collections.OrderedDict(
        float32=base,
        float16=base.half(),
        bfloat16=base.bfloat16(),
        float64=base.double(),
        complex64=torch.complex(base, -base),
        int64=torch.arange(-5, 5),
        int32=torch.arange(7, dtype=torch.int32),
        int16=torch.arange(-3, 3, dtype=torch.int16),
        int8=torch.arange(-8, 8, dtype=torch.int8),
        uint8=torch.arange(250, 256, dtype=torch.uint8),
        bool=base > 0,
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        transposed=base.t(),  # strides (1, 6)
        sliced=base[1:3, 2:5],  # an offset into the storage
        stepped=base[:, ::2],
        shared_a=shared[:6],
        shared_b=shared[4:].view(2, 4),
        parameter=torch.nn.Parameter(base[0]),
        extras={"epoch": 180, "best": 92.5, "name": "resnet", "raw": b"\x00\xff", "none": None},
        sequence=[1, (2.0, "three"), [True]],
    )
    if form == "zip":  # torch.load itself cannot read the legacy format's untyped storages
        tensors["uint16"] = torch.arange(65530, 65536, dtype=torch.int32).to(torch.uint16)
    return tensors


@pytest.mark.parametrize("form", FORMATS)
def test_every_dtype_view_and_container_reads_as_torch_loads_it(tmp_path, form):
    path = save(every_kind_of_tensor(form), tmp_path / "all.pth", form)
    ours = torch_reader.read_checkpoint(path)
    assert_same(ours, torch.load(path, weights_only=True))
    assert ours["bfloat16"].dtype == ml_dtypes.bfloat16
    assert form == "legacy" or ours["uint16"].dtype == np.uint16


@pytest.mark.parametrize("form", FORMATS)
def test_tensors_that_share_a_storage_share_memory(tmp_path, form):
    path = save(every_kind_of_tensor(form), tmp_path / "all.pth", form)
    ours = torch_reader.read_checkpoint(path)
    assert np.shares_memory(ours["shared_a"], ours["shared_b"])
    assert np.shares_memory(ours["float32"], ours["transposed"])
    ours["shared_a"][5] = -1  # as in torch, writing one tensor shows in the other
    assert ours["shared_b"][0, 1] == -1


@pytest.mark.skipif(not CHECKPOINTS, reason=f"{PUBLISHED} with the published checkpoints is absent")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda path: path.name)
def test_the_published_checkpoints_read_exactly_as_torch_loads_them(path):
    ours = torch_reader.read_checkpoint(path)
    theirs = torch.load(path, weights_only=True, map_location="cpu")
    assert_same(ours, theirs)
    state = torch_reader.read_state_dict(path)
    assert list(state) == list(theirs["state_dict"]) and state["module.linear.bias"].shape == (10,)


class Payload:
    """Unpickling this runs ``function(argument)``."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("form", [*FORMATS, "plain pickle"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, form, attack):
    marker = tmp_path / "ran"
    if attack == "os.system":
        payload = Payload(os.system, f"touch {marker}")
    else:
        payload = Payload(eval, f"open({str(marker)!r}, 'w').close()")
    checkpoint = {"state_dict": {"w": torch.ones(2)}, "epoch": payload}
    path = tmp_path / "evil.pth"
    if form == "plain pickle":
        path.write_bytes(pickle.dumps(checkpoint["epoch"]))
    else:
        save(checkpoint, path, form)
    global_name = {"os.system": f"{os.system.__module__}.system", "builtins.eval": attack}[attack]
    with pytest.raises(UnsafeCheckpointError, match=f"global {global_name}") as refused:
        torch_reader.read_checkpoint(path)
    assert refused.value.name == global_name and isinstance(refused.value, ModelFileError)
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused_by_name(tmp_path):
    path = save(torch.nn.Linear(2, 3), tmp_path / "module.pth", "zip")
    with pytest.raises(UnsafeCheckpointError, match=r"global torch\.nn\.modules\.linear\.Linear"):
        torch_reader.read_checkpoint(path)


@pytest.mark.parametrize("form", FORMATS)
def test_a_damaged_or_foreign_file_is_one_model_file_error_naming_it(tmp_path, form):
    path = save({"w": torch.ones(1000)}, tmp_path / "cut.pth", form)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match=r"cannot read PyTorch checkpoint .*cut\.pth"):
        torch_reader.read_checkpoint(path)
    (tmp_path / "notes.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"cannot read PyTorch checkpoint .*notes\.pth"):
        torch_reader.read_checkpoint(tmp_path / "notes.pth")
    with pytest.raises(ModelFileError, match="is not a file"):
        torch_reader.read_checkpoint(tmp_path / "missing.pth")


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """A forged size that would make numpy read memory outside the storage."""
    path = save({"w": torch.ones(4)}, tmp_path / "forged.pth", "zip")
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    name = next(name for name in records if name.endswith("/data.pkl"))
    assert b"K\x04\x85" in records[name]  # BININT1 4, TUPLE1: the size (4,)
    records[name] = records[name].replace(b"K\x04\x85", b"M\x00\x10\x85", 1)  # (4096,)
    with zipfile.ZipFile(path, "w") as archive:
        for record, data in records.items():
            archive.writestr(record, data)
    with pytest.raises(ModelFileError, match="reaching element 4095 of a storage of 4"):
        torch_reader.read_checkpoint(path)


def test_a_state_dict_is_found_under_net_or_state_dict_or_refused(tmp_path):
    weights = {"conv1.weight": torch.ones(2, 3)}
    for key in ("net", "state_dict"):
        path = save({key: weights, "acc": 90.0}, tmp_path / f"{key}.pth", "zip")
        assert list(torch_reader.read_state_dict(path)) == ["conv1.weight"]
    path = save({"acc": 90.0}, tmp_path / "none.pth", "zip")
    with pytest.raises(ModelFileError, match="holds no state_dict"):
        torch_reader.read_state_dict(path)


BLOCK_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
"""


@pytest.mark.parametrize("form", FORMATS)
def test_checkpoints_read_in_a_process_where_torch_cannot_be_imported(tmp_path, form):
    path = save({"state_dict": {"w": torch.arange(6.0).view(2, 3).t()}}, tmp_path / "w.pt", form)
    result = run_python(
        BLOCK_TORCH
        + f"""
from keras_resnet import torch_reader
state = torch_reader.read_state_dict({str(path)!r})
try:
    import torch
except ImportError:
    print("no torch", state["w"].tolist())
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "no torch [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]"
