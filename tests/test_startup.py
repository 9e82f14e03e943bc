"""What answers without Keras: the command line's help, listing and refusals import none of
JAX, Keras or TensorFlow; the library imports TensorFlow for none of import, build, load_model
and load_torch_weights; the layers still register with Keras however Keras comes to be
imported; and the benchmark of all this runs."""

import json
import os
import textwrap
from pathlib import Path

import keras
import pytest
from helpers import ROOT, run_python

from benchmarks import startup
from keras_resnet.trainer import compile_cache

# Each probe starts a fresh Python: the default run keeps a few of every kind, -m slow the rest.
SLOW = pytest.mark.slow
HEAVY = ("jax", "keras", "tensorflow", "tensorflow_datasets")
LEGACY = ROOT / "tests" / "data" / "legacy-resnet8-trained.keras"  # RandomCropFlip, TorchSGD

# The CLI run in a fresh process; then the heavy modules it left in sys.modules.
PROBE = """
import json, runpy, sys
sys.argv = {argv!r}
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else (
        runpy.run_module("keras_resnet", run_name="__main__", alter_sys=True))
except SystemExit as exit_:
    code = exit_.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print("\\nPROBE " + json.dumps({{"code": code, "heavy": heavy}}))
"""


def probe(*argv: str, cwd=ROOT) -> tuple[dict, str]:
    result = run_python(PROBE.format(argv=list(argv), heavy=HEAVY), cwd=cwd)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PROBE "), result.stderr[-3000:]
    return json.loads(last.removeprefix("PROBE ")), result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["-m", "--version"], 0),
        pytest.param(["-m", "--help"], 0, marks=SLOW),
        *(
            pytest.param(["-m", command, "--help"], 0, marks=SLOW)
            for command in ("train", "evaluate", "predict")
        ),
        *(
            pytest.param(["-m", command, "--help"], 0, marks=SLOW)
            for command in ("list", "export", "experiment")
        ),
        pytest.param(["-m", "experiment", "depth", "--help"], 0, marks=SLOW),
        ([str(ROOT / "train.py"), "--help"], 0),
        pytest.param([str(ROOT / "train.py"), "--version"], 0, marks=SLOW),
        (["-m", "list"], 0),
        pytest.param(["-m", "train", "--model", "resnet9"], 2, marks=SLOW),
        (["-m", "train", "--lr", "-1"], 2),
        pytest.param(["-m", "train", "--epochs", "zero"], 2, marks=SLOW),
        pytest.param(["-m", "train", "--padding", "99"], 2, marks=SLOW),
        pytest.param(
            *(["-m", "train", "--image-size", "4", "--dataset", "svhn_cropped"], 2), marks=SLOW
        ),
        pytest.param([str(ROOT / "train.py"), "--schedule", "weekly"], 2, marks=SLOW),
        pytest.param(["-m", "train", "--init-from", "missing.keras"], 1, marks=SLOW),
        pytest.param(["-m", "train", "--init-from", "folder.keras"], 1, marks=SLOW),
        (["-m", "train", "--init-from", "missing.pth"], 1),
        pytest.param(["-m", "predict", "missing.keras", "cat.png"], 1, marks=SLOW),
        (["-m", "predict", str(LEGACY), "missing.png"], 2),
        pytest.param(["-m", "predict", str(LEGACY), "tests"], 2, marks=SLOW),
        (["-m", "evaluate", "folder.keras", "--synthetic"], 1),
        pytest.param(["-m", "export", "missing.keras"], 1, marks=SLOW),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_the_command_line_answers_without_jax_keras_or_tensorflow(argv, code, tmp_path):
    argv = ["keras_resnet", *argv[1:]] if argv[0] == "-m" else argv
    (tmp_path / "folder.keras").mkdir()
    outcome, output = probe(*argv, cwd=tmp_path)
    assert outcome == {"code": code, "heavy": []}, output[-3000:]


def test_a_fifo_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    outcome, output = probe("keras_resnet", "predict", str(LEGACY), str(fifo))
    assert outcome == {"code": 2, "heavy": []}, output[-3000:]
    assert "not a regular file" in output


@pytest.mark.parametrize(
    "code",
    [
        "import keras_resnet",
        # Each use in turn, in one process: TensorFlow absent at the end was absent after each.
        f"""
        import keras_resnet, numpy as np
        model = keras_resnet.build('resnet8')
        keras_resnet.load_model({str(LEGACY)!r})
        state = {{'conv1.weight': np.zeros((16, 3, 3, 3), 'float32')}}  # PyTorch's names
        keras_resnet.load_torch_weights(model, state, strict=False)
        import tempfile, pathlib
        from keras_resnet.trainer.io import save_model  # the trainer's saving
        path = pathlib.Path(tempfile.mkdtemp()) / 'saved.keras'
        save_model(model, path)
        images = np.zeros((1, 32, 32, 3), 'float32')
        assert np.array_equal(keras_resnet.load_model(path)(images), model(images))
        """,
    ],
    ids=["import", "build-load_model-load_torch_weights-save"],
)
def test_the_library_never_imports_tensorflow(code):
    result = run_python(
        textwrap.dedent(code)
        + "\nimport sys; print(sorted({m.split('.')[0] for m in sys.modules}))",
        remove=("KERAS_BACKEND",),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = result.stdout.strip().splitlines()[-1]
    assert "'tensorflow'" not in imported and "'tensorflow_datasets'" not in imported
    assert ("'keras'" in imported) == (code != "import keras_resnet")


@pytest.mark.parametrize(
    "first",
    [
        "import keras_resnet; import keras",  # the import hook registers the layers
        # Registered at once (tests/test_schedules.py loads a model so in the default run).
        pytest.param("import keras; import keras_resnet", marks=SLOW),
        pytest.param(
            "import keras_resnet.blocks; import keras", marks=SLOW
        ),  # a module of the package imports Keras
        pytest.param(
            "from keras_resnet.trainer.config import TrainConfig; import keras", marks=SLOW
        ),
        pytest.param(
            "import keras_resnet; from keras_resnet.models import build; import keras", marks=SLOW
        ),
        pytest.param(
            "import keras_resnet; keras_resnet.models.build; import keras", marks=SLOW
        ),  # a submodule attribute
    ],
)
def test_a_saved_model_loads_with_keras_however_keras_is_imported(first):
    """Every class of the package is in Keras's registry, where loading looks; the first order
    also loads a saved model (a trained one: its optimizer and augmentation are ours too)."""
    loads = first == "import keras_resnet; import keras"
    code = f"""
    {first}
    print(sorted(n for n in keras.saving.get_custom_objects() if n.startswith("keras_resnet>")))
    """
    if loads:
        code += f"""
    model = keras.saving.load_model({str(LEGACY)!r})
    print(type(model.optimizer).__name__, type(model.get_layer("augment")).__name__)
    """
    result = run_python(code, env_updates={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    ours = sorted(n for n in keras.saving.get_custom_objects() if n.startswith("keras_resnet>"))
    assert len(ours) > 10 and "keras_resnet>BasicBlock" in ours
    assert lines[-2 if loads else -1] == str(ours)
    if loads:
        assert lines[-1] == "TorchSGD RandomCropFlip"


# The compilation cache's folder.
def test_the_compilation_cache_goes_to_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.folder() == tmp_path / "keras_resnet" / "xla"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.folder() == tmp_path / ".cache" / "keras_resnet" / "xla"


@pytest.mark.parametrize(("setting", "off"), [("0", True), ("", True), ("~/xla", False)])
def test_the_variable_chooses_the_cache_folder_or_turns_it_off(monkeypatch, setting, off):
    monkeypatch.setenv(compile_cache.VARIABLE, setting)
    assert (compile_cache.folder() is None) == off
    if not off:
        assert compile_cache.folder() == Path(setting).expanduser()


ENABLE = """
import jax
from keras_resnet.trainer import compile_cache
print(compile_cache.enable(), jax.config.jax_persistent_cache_min_compile_time_secs)
"""


def test_enabling_points_jax_at_the_folder_unless_jax_was_given_one(tmp_path):
    def enable(**env: str) -> str:
        jax_own = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
        result = run_python(ENABLE, env_updates=env, remove=jax_own)  # the tests give JAX one
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip().splitlines()[-1]

    ours = enable(**{compile_cache.VARIABLE: str(tmp_path / "xla")})
    assert ours == f"{tmp_path / 'xla'} {compile_cache.MIN_COMPILE_SECONDS}"
    theirs = enable(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "j"))
    assert theirs == f"{tmp_path / 'j'} 1.0"
    assert enable(**{compile_cache.VARIABLE: "0"}) == "None 1.0"


# The benchmark.
def test_the_startup_benchmark_tabulates_each_command_beside_bare_python():
    commands = {label: startup.COMMANDS[label] for label in (startup.BARE, "--version")}
    rows = startup.measure_commands(commands, repeats=1)
    assert [row["command"] for row in rows] == [startup.BARE, "--version"]
    assert all(row["imports"] == [] and row["median_s"] > 0 for row in rows)
    lines = startup.commands_table(rows).splitlines()
    assert lines[0] == "| command | median s | over bare Python s | jax | keras | tensorflow |"
    assert len(lines) == 4 and lines[2].startswith("| python -c pass |")
    assert all(line.count("|") == 7 for line in lines)
