"""Files from elsewhere: models load in safe mode, and every bad file is named in one line.

``evaluate`` and ``predict`` read models and pictures that users download. A model that carries
Python code is refused before any of it runs; a damaged model or picture ends the command with
``error: ...`` naming the file, never a traceback.
"""

import ast
import io
import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from keras_resnet import build, saving
from keras_resnet.errors import ModelFileError as RunError
from keras_resnet.trainer.data import CIFAR10_MEAN, CIFAR10_STD, CLASS_NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "keras_resnet"
TINY = {"depths": (1, 1), "widths": (4, 8)}  # a two-stage resnet20: builds and predicts fast


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small trained-looking model as ``train.py`` saves it: raw 0-255 pixels in."""
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    normalization = (CIFAR10_MEAN, CIFAR10_STD)
    build("resnet20", input_normalization=normalization, class_names=CLASS_NAMES, **TINY).save(path)
    return path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """Pictures of every channel count, and broken ones."""
    folder = tmp_path_factory.mktemp("images")
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 48, 4), dtype=np.uint8)
    files = {
        "rgb": Image.fromarray(pixels[..., :3]),
        "gray": Image.fromarray(pixels[..., 0]),
        "rgba": Image.fromarray(pixels),
        "big": Image.fromarray(np.zeros((100, 100, 3), np.uint8)),
    }
    paths = {}
    for name, img in files.items():
        paths[name] = folder / f"{name}.png"
        img.save(paths[name])
    paths["truncated"] = folder / "truncated.png"
    rgb = paths["rgb"].read_bytes()
    paths["truncated"].write_bytes(rgb[: len(rgb) // 2])
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("not a picture\n")
    return paths


def _assert_one_line_error(err: str, *names: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0]


# --- Loading models ----------------------------------------------------------------------------


def test_a_saved_model_loads_back_in_safe_mode(model_file):
    model = saving.load_model(model_file)
    assert model.output_shape == (None, len(CLASS_NAMES))
    keras.saving.load_model(model_file, safe_mode=True)  # no custom code needed either


def test_a_lambda_layer_is_refused_before_its_code_runs(tmp_path):
    marker = tmp_path / "ran"

    def side_effect(x):
        marker.touch()
        return x * 2

    inputs = keras.Input((4,))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda x: side_effect(x))(inputs)).save(path)
    marker.unlink()  # building the model called the lambda once

    with pytest.raises(RunError) as info:
        saving.load_model(path)
    message = str(info.value)
    assert str(path) in message
    assert "refused" in message and "Python code" in message and "Lambda" in message
    assert not marker.exists()


def _truncated(model_file: Path, path: Path) -> None:
    data = model_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("truncated.keras", _truncated),
        ("random.keras", lambda _, p: p.write_bytes(np.random.default_rng(0).bytes(4096))),
        ("x.keras", lambda _, p: p.write_text("hello, I am a text file\n")),
        ("empty.keras", lambda _, p: p.write_bytes(b"")),
        ("legacy.h5", lambda _, p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))),
        ("model.zip", lambda m, p: p.write_bytes(m.read_bytes())),  # right bytes, wrong format
    ],
)
def test_a_broken_or_foreign_file_is_named_in_a_run_error(tmp_path, model_file, name, write):
    path = tmp_path / name
    write(model_file, path)
    with pytest.raises(RunError, match="cannot load model") as info:
        saving.load_model(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_keras_file_holding_a_layer_instead_of_a_model_is_refused(tmp_path):
    weights = io.BytesIO()
    h5py.File(weights, "w").close()
    path = tmp_path / "layer.keras"
    with zipfile.ZipFile(path, "w") as archive:
        dense = keras.saving.serialize_keras_object(keras.layers.Dense(3))
        archive.writestr("config.json", json.dumps(dense))
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        archive.writestr("model.weights.h5", weights.getvalue())
    with pytest.raises(RunError, match=r"holds a Dense, not a model"):
        saving.load_model(path)


def test_a_custom_layer_of_a_package_not_imported_names_the_import(tmp_path, monkeypatch):
    @keras.saving.register_keras_serializable(package="elsewhere")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((3,))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, Doubler()(inputs)).save(path)
    # As in a process where the package that registers the layer was never imported.
    monkeypatch.delitem(keras.saving.get_custom_objects(), "elsewhere>Doubler")
    with pytest.raises(RunError) as info:
        saving.load_model(path)
    message = str(info.value)
    assert "custom class 'Doubler', which the file says is of the package elsewhere" in message
    assert "`import elsewhere` before loading it" in message
    assert "\n" not in message


def test_a_hostile_file_does_not_choose_what_we_advise_importing(tmp_path, monkeypatch):
    @keras.saving.register_keras_serializable(package="os")
    class Shell(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((3,))
    path = tmp_path / "hostile.keras"
    keras.Model(inputs, Shell()(inputs)).save(path)
    monkeypatch.delitem(keras.saving.get_custom_objects(), "os>Shell")
    with pytest.raises(RunError) as info:
        saving.load_model(path)
    message = str(info.value)
    assert "it holds the class 'Shell', which no imported package registers with Keras" in message
    assert "import os" not in message


def test_a_missing_file_and_a_folder_are_named(tmp_path):
    for path in (tmp_path / "nowhere.keras", tmp_path):
        with pytest.raises(RunError, match="is not a file") as info:
            saving.load_model(path)
        assert str(path) in str(info.value)


# --- The command line --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_bad_model_file_ends_the_command_with_one_error_line(
    capsys, tmp_path, image_files, command
):
    bad = tmp_path / "BAD.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    extra = ["--synthetic"] if command == "evaluate" else [str(image_files["rgb"])]
    code, out, err = run_cli(capsys, command, str(bad), *extra)
    assert code == 1
    assert out == ""
    _assert_one_line_error(err, str(bad))


def test_a_lambda_model_ends_predict_with_one_error_line(capsys, tmp_path, image_files):
    inputs = keras.Input((32, 32, 3))
    path = tmp_path / "code.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, 0, 0, :1] * 0)(inputs)).save(path)
    code, _, err = run_cli(capsys, "predict", str(path), str(image_files["rgb"]))
    assert code == 1
    _assert_one_line_error(err, str(path), "Python code")


def test_a_model_that_is_not_a_cifar_classifier_is_refused_naming_it(capsys, tmp_path, image_files):
    path = tmp_path / "backbone.keras"
    build("resnet20", include_top=False, pooling="avg", **TINY).save(path)
    code, _, err = run_cli(capsys, "predict", str(path), str(image_files["rgb"]))
    assert code == 1
    _assert_one_line_error(err, str(path), "(None, 8)")


def test_evaluate_refuses_a_negative_seed_and_an_unwritable_output_folder(
    capsys, tmp_path, model_file
):
    code, _, err = run_cli(capsys, "evaluate", str(model_file), "--synthetic", "--seed", "-1")
    assert code == 2
    _assert_one_line_error(err, "--seed", "-1")

    blocked = tmp_path / "file"
    blocked.write_text("")
    argv = ["evaluate", str(model_file), "--synthetic", "--output-dir", str(blocked / "out")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    _assert_one_line_error(err, str(blocked / "out"))


def test_predict_classifies_one_three_and_four_channel_pictures(capsys, model_file, image_files):
    paths = [str(image_files[name]) for name in ("rgb", "gray", "rgba")]
    code, out, err = run_cli(capsys, "predict", str(model_file), *paths, "--top", "2")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == paths
    for line in lines:
        ranked = line.split(": ", 1)[1].split(", ")
        assert len(ranked) == 2
        assert all(entry.split()[0] in CLASS_NAMES for entry in ranked)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("text", "not an image"), ("truncated", "truncated"), ("big", "too large")],
)
def test_predict_names_a_bad_picture_in_one_error_line(
    capsys, monkeypatch, model_file, image_files, name, reason
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # "big" is 10,000 pixels: a bomb now
    path = str(image_files[name])
    code, out, err = run_cli(capsys, "predict", str(model_file), str(image_files["rgb"]), path)
    assert code == 2  # a user's unreadable picture is bad input, like a bad flag
    assert out == ""  # nothing is predicted until every picture has loaded
    _assert_one_line_error(err, path, reason)


# --- No code in the project's own formats ------------------------------------------------------

UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "joblib",
    "marshal",
    "shelve",
    "cloudpickle",
}
UNSAFE_CALLS = {"torch.load", "enable_unsafe_deserialization"}
UNSAFE_KEYWORDS = {("allow_pickle", True), ("safe_mode", False), ("weights_only", False)}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _unsafe_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            UNSAFE_MODULES
        ):
            found.append(f"from {node.module}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.split(".")[0] in UNSAFE_MODULES or any(
                name == call or name.endswith(f".{call}") for call in UNSAFE_CALLS
            ):
                found.append(name)
            found += [
                f"{name}({k.arg}={k.value.value})"
                for k in node.keywords
                if isinstance(k.value, ast.Constant) and (k.arg, k.value.value) in UNSAFE_KEYWORDS
            ]
    return found


def test_the_scan_finds_each_kind_of_unsafe_use():
    source = (
        "import pickle\nfrom dill import loads\nimport torch\n"
        "torch.load('x.pth')\nnp.load('x.npy', allow_pickle=True)\n"
        "keras.saving.load_model('m.keras', safe_mode=False)\n"
        "keras.config.enable_unsafe_deserialization()\npickle.loads(b'')\n"
    )
    assert len(_unsafe_uses(source)) == 7


# The one module that reads pickles (PyTorch checkpoints), through an allow-list of globals.
TORCH_READER = PACKAGE / "torch_reader.py"


@pytest.mark.parametrize(
    "path", [p for p in sorted(PACKAGE.glob("*.py")) if p != TORCH_READER], ids=lambda p: p.name
)
def test_the_package_never_unpickles_or_turns_off_safe_mode(path):
    assert _unsafe_uses(path.read_text()) == []


def test_the_torch_reader_unpickles_only_through_its_find_class():
    """It subclasses pickle.Unpickler, overriding find_class, and calls nothing else of pickle
    (no pickle.load or loads, whose unpickler would import any global)."""
    tree = ast.parse(TORCH_READER.read_text())
    uses = {
        _dotted(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _dotted(node).startswith("pickle.")
    }
    assert uses == {"pickle.Unpickler", "pickle.UnpicklingError"}
    (unpickler,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and [_dotted(b) for b in node.bases] == ["pickle.Unpickler"]
    ]
    assert "find_class" in {f.name for f in unpickler.body if isinstance(f, ast.FunctionDef)}
    assert set(_unsafe_uses(TORCH_READER.read_text())) == {"pickle", "pickle.UnpicklingError"}
