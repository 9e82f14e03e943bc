"""benchmarks/: the PyTorch twin is the same network, and every script runs end to end."""

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_resnet
from benchmarks import host_overhead, throughput
from benchmarks.common import ROOT
from keras_resnet import torch_weights
from keras_resnet.models import get_spec, parameter_count
from keras_resnet.trainer.config import RECIPES

torch = pytest.importorskip("torch")
from benchmarks import torch_resnet  # noqa: E402  (needs PyTorch)


@pytest.mark.parametrize(
    "name",
    ["resnet18", "resnet20", "resnet50", "plain20", "preact_resnet18", "preact_resnet164"],
)
def test_torch_twin_has_the_keras_parameter_count(name):
    model = torch_resnet.TorchResNet(get_spec(name))
    assert torch_resnet.count_trainable(model) == parameter_count(name)


def weight_pairs(torch_model, keras_model) -> list:
    """(Keras variable, twin tensor) for every weight, matched by the twin's torchvision name."""
    targets = torch_weights._model_targets(keras_model, "end")
    state = torch_model.state_dict()
    keys = [key for key in state if not key.endswith("num_batches_tracked")]
    assert {torch_weights.canonical_name(key) for key in keys} == set(targets)
    return [(targets[torch_weights.canonical_name(key)].variable, state[key]) for key in keys]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # option A shortcuts
        {"shortcut": "B"},  # the notes' projection shortcuts
        {"shortcut": "none"},
        {"block": "bottleneck", "shortcut": "C"},
        {"block": "preact_basic", "shortcut": "B"},
        {"block": "preact_bottleneck", "shortcut": "B"},
    ],
    ids=repr,
)
def test_torch_twin_gives_the_keras_logits(overrides):
    """ResNet-20's small stages with every block and shortcut kind (weights copied over)."""
    torch.manual_seed(0)
    torch_model = torch_resnet.TorchResNet(get_spec("resnet20", **overrides))
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch_model.eval()
    keras_model = keras_resnet.build("resnet20", **overrides)
    keras_resnet.load_torch_weights(keras_model, torch_model.state_dict(), option_a_padding="end")
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = keras_model.predict(x.transpose(0, 2, 3, 1), verbose=0)  # one compile, not per op
    assert np.max(np.abs(got - expected)) < 1e-4


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the 2015 paper's: He-normal convolutions, a zero classifier bias
        {"initializer": "torch"},  # the notes' nets: PyTorch's defaults throughout
        {"stem": "imagenet"},  # torchvision's
        {"zero_init_residual": True},
        {"block": "preact_basic", "zero_init_residual": True},
    ],
    ids=repr,
)
def test_torch_twin_starts_its_weights_as_keras_does(overrides):
    """Every weight of the twin has the mean and spread of the Keras one it stands for."""
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    torch_model = torch_resnet.TorchResNet(get_spec("resnet8", **overrides))
    keras_model = keras_resnet.build("resnet8", **overrides)
    for variable, tensor in weight_pairs(torch_model, keras_model):
        ours, theirs = tensor.detach().numpy(), variable.numpy()
        # Two samples' spreads and means differ by about 1/sqrt(size) of the spread (at most
        # 2.7x and 5.6x that over seeds 0-3); PyTorch's and He's convolutions differ by 2-3x in
        # spread, gamma 1 and 0 or a zero and a drawn bias by all of it.
        noise = 1 / np.sqrt(ours.size)
        spread = np.std(theirs)
        assert np.std(ours) == pytest.approx(spread, rel=4 * noise, abs=1e-6), variable.path
        assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=8 * spread * noise + 1e-6), (
            variable.path
        )


def test_unknown_framework_is_refused(capsys):
    with pytest.raises(SystemExit):
        throughput.parse_args(["--frameworks", "keras,tensorflow"])
    assert "tensorflow" in capsys.readouterr().err


# Makes TensorFlow and tensorflow-datasets look uninstalled, as on the GPU machine.
HIDE_TENSORFLOW = """
from importlib.machinery import PathFinder

_find_spec = PathFinder.find_spec.__func__


def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
        return None
    return _find_spec(cls, name, path, target)


PathFinder.find_spec = classmethod(find_spec)
"""


def run(module: str, *args: str, site: Path) -> str:
    """``python -m benchmarks.<module>`` from the repository root, with TensorFlow hidden."""
    (site / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_cpu_convolutions_compares_both_xla_settings_and_torch(tmp_path):
    out = tmp_path / "conv.json"
    stdout = run(
        "cpu_convolutions", "--batch", "2", "--repeats", "1", "--json", str(out), site=tmp_path
    )
    assert "| stage (HxWxC) | op | xla-ynnpack | xla-eigen |" in stdout
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"xla-ynnpack", "xla-eigen", "xla-eigen-matmul-wgrad", "torch"}
    for name, row in report["results"].items():
        assert "error" not in row, (name, row)
        stage = row["stages"]["32x32x64"]
        assert all(value > 0 for value in stage.values()), name
    assert set(report["results"]["xla-eigen"]["stages"]["4x4x512"]) == {
        "forward", "input grad", "weight grad",
    }  # fmt: skip
    # Each XLA setting ran under its own flag.
    assert report["results"]["xla-ynnpack"]["xla_flags"].endswith("=+individual_convolution")
    assert report["results"]["xla-eigen"]["xla_flags"].endswith("=-individual_convolution")


@pytest.fixture(scope="module", autouse=True)
def gpu_session_process(
    request, tmp_path_factory
) -> Iterator[tuple[subprocess.Popen, Path] | None]:
    """Starts the prepared GPU script as the module begins, if a selected test reads it: QUICK
    on this CPU, TensorFlow hidden. Its benchmark processes (about 45 s) run while the
    in-process tests use the other core. QUICK runs every framework and every recipe once, so
    this one run serves the throughput, input pipeline and recipe tests too."""
    if not any("gpu_session" in item.fixturenames for item in request.session.items):
        yield None
        return
    site = tmp_path_factory.mktemp("gpu_session")
    (site / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    env = {
        **os.environ,
        "QUICK": "1",
        "OUT": str(site / "out"),
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }
    with open(site / "gpu_session.log", "w") as log:
        process = subprocess.Popen(
            ["bash", str(ROOT / "benchmarks" / "gpu_session.sh")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield process, site
    process.wait(timeout=900)  # never left running past the module


def section(log: str, step: str) -> str:
    """What one step of gpu_session.sh printed, from the session's log."""
    return log.split(f"== {step}\n", 1)[1].split(f"== {step} exited with", 1)[0]


@pytest.fixture(scope="module")
def gpu_session(gpu_session_process) -> tuple[str, Path]:
    """The script's output and its $OUT, once it has ended with exit status 0."""
    process, site = gpu_session_process
    process.wait(timeout=900)
    stdout = (site / "gpu_session.log").read_text()
    assert process.returncode == 0, stdout[-6000:]
    return stdout, site / "out"


@pytest.mark.slow
def test_gpu_session_script_runs_every_step_quickly(gpu_session):
    stdout, out = gpu_session
    steps = (
        "throughput-float32", "throughput-bfloat16", "input-pipeline", "recipe-epochs",
        "host-overhead",
    )  # fmt: skip
    log = (out / "gpu_session.log").read_text()
    for name in steps:
        assert f"== {name} exited with 0" in stdout, stdout[-3000:]
        assert section(log, name).strip(), name
    reports = (
        "throughput-float32", "throughput-bfloat16", "input_pipeline", "recipe_epochs",
        "host_overhead",
    )  # fmt: skip
    for name in reports:
        assert json.loads((out / f"{name}.json").read_text())
    assert json.loads((out / "throughput-bfloat16.json").read_text())["precision"] == (
        "mixed_bfloat16"
    )
    assert len(list(out.iterdir())) <= 8  # what the device machine sends back


@pytest.mark.slow
def test_throughput_then_input_pipeline_end_to_end(gpu_session):
    """Every framework's row, the table, the JSON; then the input path against those rates."""
    _, out = gpu_session
    log = (out / "gpu_session.log").read_text()
    stdout = section(log, "throughput-float32")
    assert "| framework | train img/s | vs keras | compile s | eval img/s | peak memory |" in stdout
    assert "**resnet8**" in stdout and "keras/jax = " in stdout and "keras/torch = " in stdout
    report = json.loads((out / "throughput-float32.json").read_text())
    for key in ("model", "batch_size", "precision", "device", "versions", "results", "ratios"):
        assert key in report
    assert report["batch_size"] == 16  # QUICK's own batch, not the script's 128
    assert set(report["results"]) == {"keras", "keras-trainer", "jax", "torch"}
    for name, row in report["results"].items():
        assert "error" not in row, (name, row)
        assert row["train_images_per_s"] > 0 and row["first_step_s"] > 0, name
        assert row["peak_memory_bytes"] > 0, name
        if name != "keras-trainer":
            assert row["eval_images_per_s"] > 0, name
    assert report["ratios"]["keras/jax"] > 0 and report["ratios"]["keras/torch"] > 0
    assert not any(hit for found in report["imported"].values() for hit in found.values()), (
        f"TensorFlow or tfds was imported: {report['imported']}"
    )

    stdout = section(log, "input-pipeline")
    assert "| input path | images/s | ms/batch | x Keras train rate | target >= 5x |" in stdout
    report = json.loads((out / "input_pipeline.json").read_text())
    train_path = report["input"]["CifarBatches train=True (shuffle + gather), host"]
    assert train_path["images"] == 2048 and train_path["images_per_s"] > 0
    assert report["consumption"]["rates"]["keras"] > 0 and report["ratio"] > 0
    assert not any(report["imported"].values())


@pytest.mark.slow
def test_recipe_epochs_times_each_recipe_as_the_trainer_runs_it(gpu_session):
    _, out = gpu_session
    stdout = section((out / "gpu_session.log").read_text(), "recipe-epochs")
    assert "| recipe | model, batch, precision | compile s | train img/s |" in stdout
    report = json.loads((out / "recipe_epochs.json").read_text())
    rows = {row["recipe"]: row for row in report["rows"]}
    assert set(rows) == set(RECIPES)
    assert all("error" not in row for row in rows.values()), rows
    assert (rows["fast"]["batch_size"], rows["fast"]["precision"]) == (512, "mixed_bfloat16")
    assert rows["fast"]["steps_per_epoch"] == -(-5200 // 512)  # one device keeps the short batch
    assert (rows["paper"]["eval_split"], rows["paper"]["eval_images"]) == ("validation", 5000)
    assert (rows["note"]["eval_split"], rows["note"]["eval_images"]) == ("test", 10_000)
    for row in rows.values():
        assert row["train_images_per_s"] > 0 and row["eval_s"] > 0
        epoch = row["train_epoch_s"] + row["eval_s"]
        assert row["projected_run_s"] == pytest.approx(row["epochs"] * epoch)
    assert not any(report["imported"].values())


def check_host_overhead_rows(report: dict, ran: set[str]) -> None:
    """Each row of ``ran`` has a positive finite ms/step for every epoch; the others say why
    they were skipped."""
    rows = report["rows"]
    for name in ran:
        row = rows[name]
        assert "error" not in row and "skipped" not in row, (name, row)
        assert len(row["step_ms_epochs"]) == report["epochs"], name
        for key in ("step_ms", "cpu_ms"):
            epochs = row[f"{key}_epochs"]
            assert all(math.isfinite(ms) and ms > 0 for ms in epochs), (name, key, row)
            assert row[key] in epochs[1:], (name, key)  # the first epoch compiles: not timed
        assert row["steps_per_epoch"] > 0, name
    for name in set(rows) - ran:
        assert rows[name]["skipped"], (name, rows[name])
    for name in ran & {"trainer-note", "trainer-keras-log"}:
        assert rows[name]["log_lines"] > 0, name  # each log was written


@pytest.mark.slow
def test_host_overhead_times_every_configuration_without_tensorflow(gpu_session):
    """QUICK's run, TensorFlow hidden: every row but TensorBoard's and the folder's, which say
    why they were skipped; the table lists them all."""
    _, out = gpu_session
    stdout = section((out / "gpu_session.log").read_text(), "host-overhead")
    assert "| configuration | ms/step | CPU ms/step | x bare fit |" in stdout
    report = json.loads((out / "host_overhead.json").read_text())
    assert list(report["rows"]) == list(host_overhead.ROWS)
    needs_tensorflow = {n for n, (_, need) in host_overhead.ROWS.items() if need == "tensorflow"}
    check_host_overhead_rows(report, set(host_overhead.ROWS) - needs_tensorflow)
    assert report["rows"]["trainer-devices"]["device"]["count"] == host_overhead.DEVICES
    for label, _ in host_overhead.ROWS.values():
        assert f"| {label} |" in report["table"]


@pytest.mark.slow
def test_host_overhead_times_tensorboard_and_a_streamed_folder(tmp_path):
    """The rows that need TensorFlow: TensorBoard and the streamed folder through train(), and
    the folder decoded alone."""
    pytest.importorskip("tensorflow")
    out = tmp_path / "host.json"
    rows = "trainer-tensorboard,trainer-folder,folder-decode"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.host_overhead", "--quick", "--rows", rows,
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    check_host_overhead_rows(report, set(rows.split(",")))
    assert "streamed image folder" in proc.stdout


@pytest.mark.slow
def test_folder_input_times_a_generated_jpeg_folder(tmp_path):
    """A few dozen tiny JPEGs: every row, the table and the JSON (TensorFlow lists the files)."""
    pytest.importorskip("tensorflow")
    out = tmp_path / "folder.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.folder_input", "--images", "40", "--size", "16",
         "--batch-size", "8", "--repeats", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| input path | images/s | ms/batch |" in proc.stdout
    report = json.loads(out.read_text())
    assert report["benchmark"] == "folder_input" and report["images"] == 40
    assert len(report["input"]) == 3
    for name, row in report["input"].items():
        assert row["images_per_s"] > 0, name
    streamed = next(row for name, row in report["input"].items() if "streamed" in name)
    assert streamed["images"] == 40 and streamed["ms_per_batch"] > 0
