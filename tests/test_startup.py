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

SLOW = pytest.mark.slow
HEAVY = ("jax", "keras", "tensorflow", "tensorflow_datasets")
LEGACY = ROOT / "tests" / "data" / "legacy-resnet8-trained.keras"  # RandomCropFlip, TorchSGD

# Command lines that need no model, with their exit codes: run one after another in one fresh
# Python, so a heavy module any of them imports is still there when the next one ends.
COMMANDS = [
    (["-m", "--version"], 0),
    (["-m", "--help"], 0),
    *((["-m", command, "--help"], 0) for command in ("train", "evaluate", "predict")),
    *((["-m", command, "--help"], 0) for command in ("list", "export", "experiment")),
    (["-m", "experiment", "depth", "--help"], 0),
    ([str(ROOT / "train.py"), "--help"], 0),
    ([str(ROOT / "train.py"), "--version"], 0),
    (["-m", "list"], 0),
    (["-m", "train", "--model", "resnet9"], 2),
    (["-m", "train", "--lr", "-1"], 2),
    (["-m", "train", "--epochs", "zero"], 2),
    (["-m", "train", "--padding", "99"], 2),
    (["-m", "train", "--image-size", "4", "--dataset", "svhn_cropped"], 2),
    ([str(ROOT / "train.py"), "--schedule", "weekly"], 2),
    (["-m", "train", "--init-from", "missing.keras"], 1),
    (["-m", "train", "--init-from", "folder.keras"], 1),
    (["-m", "train", "--init-from", "missing.pth"], 1),
    (["-m", "predict", "missing.keras", "cat.png"], 1),
    (["-m", "predict", str(LEGACY), "missing.png"], 2),
    (["-m", "predict", str(LEGACY), "a-folder"], 2),
    (["-m", "predict", str(LEGACY), "fifo.png"], 2),  # refused without being read: no hang
    (["-m", "evaluate", "folder.keras", "--synthetic"], 1),
    (["-m", "export", "missing.keras"], 1),
]

# Each command line as ``python ARGV`` would run it, its output kept; then the heavy modules
# loaded so far.
PROBE = """
import contextlib, io, json, runpy, sys
outcomes = []
for argv in {argvs!r}:
    sys.argv, code, output = argv, 0, io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            if argv[0].endswith(".py"):
                runpy.run_path(argv[0], run_name="__main__")
            else:
                runpy.run_module("keras_resnet", run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            code = exit_.code
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
    outcomes.append({{"code": code, "heavy": heavy, "output": output.getvalue()}})
print("PROBE " + json.dumps(outcomes))
"""


def test_the_command_line_answers_without_jax_keras_or_tensorflow(tmp_path):
    argvs = [["keras_resnet", *argv[1:]] if argv[0] == "-m" else argv for argv, _ in COMMANDS]
    (tmp_path / "folder.keras").mkdir()
    (tmp_path / "a-folder").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    result = run_python(PROBE.format(argvs=argvs, heavy=HEAVY), cwd=tmp_path)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PROBE "), result.stderr[-3000:]
    outcomes = json.loads(last.removeprefix("PROBE "))
    for (argv, code), outcome in zip(COMMANDS, outcomes, strict=True):
        assert (outcome["code"], outcome["heavy"]) == (code, []), (argv, outcome["output"][-3000:])
        assert outcome["output"].strip(), argv  # each says something: help, a version, an error
    fifo = outcomes[[argv[-1] for argv, _ in COMMANDS].index("fifo.png")]
    assert "not a regular file" in fifo["output"]


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


# enable() for each setting of ours in turn, in one process: JAX decides once, so after the
# first folder a second is not taken.
ENABLE = """
import os, jax
from keras_resnet.trainer import compile_cache
for setting in {settings!r}:
    os.environ[compile_cache.VARIABLE] = setting
    print(compile_cache.enable(), jax.config.jax_persistent_cache_min_compile_time_secs)
"""


def test_enabling_points_jax_at_the_folder_unless_jax_was_given_one(tmp_path):
    def enable(*settings: str, **env: str) -> list[str]:
        jax_own = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
        code = ENABLE.format(settings=list(settings))
        result = run_python(code, env_updates=env, remove=jax_own)  # the tests give JAX one
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip().splitlines()

    ours, other = tmp_path / "xla", tmp_path / "other"
    assert enable("0", str(ours), str(other)) == [
        "None 1.0",
        f"{ours} {compile_cache.MIN_COMPILE_SECONDS}",
        f"{ours} {compile_cache.MIN_COMPILE_SECONDS}",
    ]
    assert enable(str(ours), JAX_COMPILATION_CACHE_DIR=str(tmp_path / "j")) == [
        f"{tmp_path / 'j'} 1.0"
    ]


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
