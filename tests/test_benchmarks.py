"""benchmarks/: the PyTorch twin is the same network, and each script's quick run gives a
consistent table and report; the GPU session script runs end to end under -m slow."""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import TINY_MODEL

import keras_resnet
from benchmarks import common, cpu_convolutions, host_overhead, input_pipeline, throughput
from benchmarks.common import RESULT, ROOT
from keras_resnet import torch_weights
from keras_resnet.models import get_spec, parameter_count
from keras_resnet.trainer.config import RECIPES

torch = pytest.importorskip("torch")
from benchmarks import torch_resnet  # noqa: E402  (needs PyTorch)


@pytest.fixture(autouse=True)
def _full_compilation(monkeypatch):
    """The benchmarks' worker processes compile as a user's do: XLA's quick compilation (the
    tests' default) can deadlock a program on virtual CPU devices."""
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")


@pytest.mark.parametrize(
    "name",
    ["resnet18", "resnet20", "resnet50", "plain20", "preact_resnet18", "preact_resnet164"],
)
def test_torch_twin_has_the_keras_parameter_count(name):
    model = torch_resnet.TorchResNet(get_spec(name))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == parameter_count(name)


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
        throughput.main(["--frameworks", "keras", "tensorflow"])
    assert "invalid choice: 'tensorflow'" in capsys.readouterr().err


def in_process(module):
    """``common.run_worker`` for ``module``, running each worker in this process rather than a
    fresh one: the same code and rows, without each process's seconds of importing Keras and
    JAX."""

    def run_worker(name: str, argv: list[str], env=None) -> dict:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert module.main(argv) == 0
        line = [line for line in out.getvalue().splitlines() if line.startswith(RESULT)][-1]
        return json.loads(line[len(RESULT) :])

    return run_worker


def test_throughput_reports_every_row_and_the_recipes_projection(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_worker", in_process(throughput))
    out = tmp_path / "throughput.json"
    argv = ["--recipe", "paper", "--model", TINY_MODEL, "--batch-size", "8", "--steps", "2",
            "--eval-steps", "1", "--eval-batch-size", "16", "--json", str(out)]  # fmt: skip
    assert throughput.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| framework | train img/s | vs keras | compile s | eval img/s | peak memory |" in stdout
    assert f"throughput: recipe paper, model {TINY_MODEL}, batch_size 8, steps 2," in stdout
    assert "paper: 182 epochs x " in stdout
    report = json.loads(out.read_text())
    settings = (report["model"], report["batch_size"], report["precision"])
    assert settings == (TINY_MODEL, 8, "float32")
    assert report["parameters"] == parameter_count(TINY_MODEL)
    rows = report["results"]
    assert list(rows) == list(throughput.FRAMEWORKS)
    for name, row in rows.items():
        assert "error" not in row, (name, row)
        assert row["train_images_per_s"] > 0 and row["train_compile_s"] >= 0, name
        assert row["peak_bytes"] is None, name  # a CPU counts none
        assert ("eval_images_per_s" in row) == (name == "keras"), name
        vs = row["train_images_per_s"] / rows["keras"]["train_images_per_s"]
        rate = common.fmt_rate(row["train_images_per_s"])
        assert f"| {name} | {rate} | {vs:.2f}x | {row['train_compile_s']:.1f} |" in stdout, name
    # paper: 45,000 training images and the 5,000 of its validation split evaluated, 182 epochs
    projected = report["projection"]
    epoch = 45_000 / rows["keras-trainer"]["train_images_per_s"]
    epoch += 5_000 / rows["keras"]["eval_images_per_s"]
    assert projected["epochs"] == RECIPES["paper"]["epochs"]
    assert projected["epoch_s"] == pytest.approx(epoch)
    assert projected["run_s"] == pytest.approx(182 * epoch)


def throughput_report(path: Path) -> Path:
    """A ``benchmarks.throughput`` report whose Keras row trains 2,000 images/s."""
    report = {"model": "resnet18", "batch_size": 512, "precision": "mixed_bfloat16"}
    path.write_text(json.dumps({**report, "results": {"keras": {"train_images_per_s": 2_000}}}))
    return path


def test_input_pipeline_rates_the_input_path_against_the_model(tmp_path, capsys):
    against = throughput_report(tmp_path / "t.json")
    out = tmp_path / "input.json"
    argv = ["--against", str(against), "--images", "1024", "--batch-size", "64",
            "--repeats", "1", "--json", str(out)]  # fmt: skip
    assert input_pipeline.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| input path | images/s | ms/batch | x Keras train rate | target >= 5x |" in stdout
    assert "trains resnet18 at 2,000 img/s (batch 512, mixed_bfloat16)" in stdout
    report = json.loads(out.read_text())
    assert len(report["input"]) == 2
    for name, row in report["input"].items():
        assert row["images_per_s"] > 0 and row["ms_per_batch"] > 0, name
        assert f"| {row['images_per_s'] / 2_000:,.1f}x |" in stdout, name
    train = report["input"]["CifarBatches train=True (shuffle + gather), host"]
    assert train["images"] == 1024 and report["consumption"]["keras_images_per_s"] == 2_000


def test_input_pipeline_times_a_folder_of_jpegs_held_and_streamed(tmp_path, capsys):
    pytest.importorskip("tensorflow")  # it lists the files, as in training
    against = throughput_report(tmp_path / "t.json")
    out = tmp_path / "input.json"
    argv = ["--against", str(against), "--images", "256", "--batch-size", "8", "--repeats", "1",
            "--folder", "40", "--json", str(out)]  # fmt: skip
    assert input_pipeline.main(argv) == 0
    rows = json.loads(out.read_text())["input"]
    held = rows["load_folder into memory (list, check sizes, decode all)"]
    streamed = next(row for name, row in rows.items() if "FolderImages" in name)
    assert held["images"] == 50 and held["images_per_s"] > 0  # 40 training and 10 test files
    assert streamed["images"] == 40 and streamed["ms_per_batch"] > 0
    assert "FolderImages (streamed" in capsys.readouterr().out


def test_cpu_convolutions_runs_each_setting_under_its_own_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_worker", in_process(cpu_convolutions))
    for name in ("XLA_FLAGS", "JAX_PLATFORMS"):  # each worker sets its own: put them back after
        monkeypatch.setenv(name, os.environ.get(name, ""))
    out = tmp_path / "conv.json"
    argv = ["--batch", "1", "--repeats", "1", "--json", str(out)]
    assert cpu_convolutions.main(argv) == 0
    assert "| stage (HxWxC) | op | xla-ynnpack | xla-eigen | torch |" in capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert list(results) == list(cpu_convolutions.ROWS)
    for name, row in results.items():
        assert row["xla_flags"] == cpu_convolutions.SETTINGS.get(name, ""), name
        for stage in ("32x32x64", "4x4x512"):
            assert list(row["stages"][stage]) == list(cpu_convolutions.OPS), name
            assert all(value > 0 for value in row["stages"][stage].values()), name


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


def test_host_overhead_times_the_trainer_beside_bare_fit_and_jax(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_worker", in_process(host_overhead))
    out = tmp_path / "host.json"
    rows = ["jax", "keras-fit", "trainer-note"]
    assert host_overhead.main(["--quick", "--rows", *rows, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["rows"]) == rows
    check_host_overhead_rows(report, set(rows))
    table = capsys.readouterr().out
    note, fit = report["rows"]["trainer-note"]["step_ms"], report["rows"]["keras-fit"]["step_ms"]
    assert f"| train(): note recipe, its log | {note:.3f} |" in table
    assert f"| {note / fit:.2f} |" in table


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


def section(log: str, step: str) -> str:
    """What one step of gpu_session.sh printed, from the session's log."""
    return log.split(f"== {step}\n", 1)[1].split(f"== {step} exited with", 1)[0]


@pytest.mark.slow
def test_gpu_session_script_runs_every_step_quickly_without_tensorflow(tmp_path):
    """``QUICK=1 bash benchmarks/gpu_session.sh`` with TensorFlow hidden, as on the GPU machine:
    every step, each report and every framework's row, none of them needing TensorFlow."""
    (tmp_path / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    out = tmp_path / "out"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "QUICK": "1", "OUT": str(out), "PYTHON": sys.executable,
           "PYTHONPATH": path}  # fmt: skip
    script = str(ROOT / "benchmarks" / "gpu_session.sh")
    proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    log = (out / "gpu_session.log").read_text()
    for name in ("throughput-float32", "throughput-bfloat16", "input-pipeline", "host-overhead"):
        assert f"== {name} exited with 0" in log, log[-3000:]
        assert section(log, name).strip(), name
    assert len(list(out.iterdir())) <= 8  # what the device machine sends back
    float32, bfloat16 = (
        json.loads((out / f"throughput-{p}.json").read_text()) for p in ("float32", "bfloat16")
    )
    assert list(float32["results"]) == list(throughput.FRAMEWORKS)
    assert list(bfloat16["results"]) == ["keras", "keras-trainer"]
    assert (float32["recipe"], bfloat16["recipe"]) == ("paper", "fast")
    assert bfloat16["precision"] == "mixed_bfloat16" and bfloat16["batch_size"] == 8
    for report in (float32, bfloat16):
        assert all("error" not in row for row in report["results"].values()), report["results"]
        assert report["projection"]["run_s"] > 0
    pipeline = json.loads((out / "input_pipeline.json").read_text())
    keras_rate = bfloat16["results"]["keras"]["train_images_per_s"]
    assert pipeline["consumption"]["keras_images_per_s"] == keras_rate
    host = json.loads((out / "host_overhead.json").read_text())
    assert list(host["rows"]) == list(host_overhead.ROWS)
    check_host_overhead_rows(host, set(host_overhead.ROWS) - set(host_overhead.NEEDS_TENSORFLOW))
    assert host["rows"]["trainer-devices"]["device"].endswith("x 2")  # QUICK's --devices
