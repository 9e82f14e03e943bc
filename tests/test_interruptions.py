"""Real processes killed mid-run: no finished epoch is lost, and a restart ends identically."""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_python

pytestmark = pytest.mark.slow  # real processes, started, signalled and killed

ROOT = Path(__file__).resolve().parents[1]
# Eight steps an epoch on a small net: long enough to be killed inside an epoch.
COMMAND = [
    sys.executable,
    str(ROOT / "train.py"),
    "--model", "resnet8",
    "--synthetic",
    "--train-size", "512",
    "--batch-size", "64",
    "--epochs", "3",
]  # fmt: skip
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
# Without the tests' compilation cache or quick compilation: the first step really compiles, for
# as long as a user's does, however warm the cache is.
COMPILING = {
    **{k: v for k, v in ENV.items() if not k.startswith(("JAX_COMPILATION", "JAX_PERSISTENT"))},
    "KERAS_RESNET_XLA_CACHE": "0",
    "JAX_DISABLE_MOST_OPTIMIZATIONS": "0",
}


def start(run_dir: Path, log: Path | None = None, env: dict = ENV) -> subprocess.Popen:
    """The command in the background, its output piped or, when nothing reads it while it
    runs (a full pipe would block it), written to ``log``."""
    with open(log, "w") if log else contextlib.nullcontext(subprocess.PIPE) as out:
        return subprocess.Popen(
            [*COMMAND, "--output-dir", str(run_dir)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def finish(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, "--output-dir", str(run_dir)],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_for_epochs(
    process: subprocess.Popen, run_dir: Path, epochs: int, log: Path | None = None
) -> None:
    """Block until ``state.json`` records ``epochs`` finished epochs."""
    deadline = time.time() + 240
    state = run_dir / "state.json"
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= epochs:
            return
        assert process.poll() is None, log.read_text() if log else process.communicate()[0]
        time.sleep(0.05)
    process.kill()
    pytest.fail("the run never finished its first epoch")


def weights(path: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.saving.load_model(path).weights]


def assert_same_run(a: Path, b: Path) -> None:
    for x, y in zip(weights(a / "model.keras"), weights(b / "model.keras"), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


def test_sigkill_mid_epoch_then_the_same_command_ends_like_an_unbroken_run(tmp_path):
    unbroken, log = tmp_path / "unbroken", tmp_path / "unbroken.log"
    reference = start(unbroken, log)  # alongside the killed run: the two share the two cores
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_epochs(process, run_dir, 1)
    time.sleep(0.3)  # inside epoch 2
    process.kill()
    process.wait(timeout=30)
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] in (1, 2)

    result = finish(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Resuming" in result.stdout
    assert reference.wait(timeout=300) == 0, log.read_text()
    assert_same_run(unbroken, run_dir)


def test_ctrl_c_and_sigterm_exit_non_zero_naming_the_resume_command(tmp_path):
    """One run per signal, both at once (one core each), each signalled after its epoch 1."""
    runs = {
        (signum, code): (tmp_path / signum.name, tmp_path / f"{signum.name}.log")
        for signum, code in [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
    }
    processes = {key: start(run_dir, log) for key, (run_dir, log) in runs.items()}
    for (signum, code), process in processes.items():
        run_dir, log = runs[signum, code]
        wait_for_epochs(process, run_dir, 1, log)
        process.send_signal(signum)
    for (signum, code), process in processes.items():
        run_dir, log = runs[signum, code]
        process.wait(timeout=60)
        output = log.read_text()
        assert process.returncode == code, output
        assert f"Resume with: python train.py --resume {run_dir}" in output
        assert "Traceback" not in output
        state = json.loads((run_dir / "state.json").read_text())
        assert state["epochs_done"] >= 1
        assert (run_dir / state["checkpoint"]).is_file()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_first_step_compiles_exits_at_once_without_a_traceback(
    tmp_path, signum, code
):
    run_dir = tmp_path / "run"
    process = start(run_dir, env=COMPILING)
    seen = []
    for line in process.stdout:  # the notes' log prints "Epoch: 0" just before the first step
        seen.append(line)
        if line.startswith("Epoch: 0"):
            break
    time.sleep(0.5)  # inside JAX's tracing: an exception raised here used to be printed and lost
    process.send_signal(signum)
    sent = time.time()
    output = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == code, output  # not -11 (SIGSEGV)
    assert time.time() - sent < 10, output  # not the rest of the compile, nor a hang
    assert f"Interrupted. No epoch had finished, so no model was saved in {run_dir}." in output
    assert f"Resume with: python train.py --resume {run_dir}" in output
    assert "Traceback" not in output and "Interrupted(" not in output
    assert not (run_dir / "state.json").exists()


def test_a_second_signal_never_aborts_the_process_or_prints_a_traceback(tmp_path):
    """Two Ctrl-Cs mid-epoch, 50 ms and 300 ms apart (one run each, side by side)."""
    gaps = {0.05: tmp_path / "fast", 0.3: tmp_path / "slow"}
    logs = {gap: tmp_path / f"{run_dir.name}.log" for gap, run_dir in gaps.items()}
    processes = {gap: start(run_dir, logs[gap]) for gap, run_dir in gaps.items()}
    for gap, process in processes.items():
        wait_for_epochs(process, gaps[gap], 1, logs[gap])
        process.send_signal(signal.SIGINT)
        time.sleep(gap)
        process.send_signal(signal.SIGINT)
    for gap, process in processes.items():
        process.wait(timeout=120)
        output = logs[gap].read_text()
        assert process.returncode == 130, output  # not -6 (SIGABRT)
        for crash in ("Traceback", "Exception ignored", "terminate called"):
            assert crash not in output, output
        state = json.loads((gaps[gap] / "state.json").read_text())
        assert len(weights(gaps[gap] / state["checkpoint"])) > 0


def test_ctrl_c_while_the_frameworks_load_exits_130_without_a_traceback(tmp_path):
    process = start(tmp_path / "run")
    time.sleep(1.0)  # importing JAX, Keras and TensorFlow
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


def run_patched(patch: str, run_dir: Path, **kwargs) -> subprocess.CompletedProcess:
    """``train.py``'s command in a fresh process after ``patch`` ran, as train.py ends it."""
    code = f"""
        import os, signal, sys, time
        from keras_resnet import cli
        from keras_resnet.trainer import fit
        {patch}
        cli.exit_quietly(cli.train_main({[*COMMAND[2:], "--output-dir", str(run_dir)]!r}))
    """
    return run_python(code, env_updates={"PYTHONUNBUFFERED": "1"}, **kwargs)


def test_sigterm_while_the_model_is_built_exits_143_saying_nothing_is_saved(tmp_path):
    run_dir = tmp_path / "run"
    result = run_patched(
        """
        def build_model(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler ends the process before this does
        fit.build_model = build_model
        """,
        run_dir,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 143, output
    assert f"Interrupted before the run began: nothing of it is saved in {run_dir}." in output
    assert "Traceback" not in output


def test_a_file_size_limit_of_zero_is_one_line_not_a_traceback(tmp_path):
    def no_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    result = subprocess.run(
        [*COMMAND, "--output-dir", str(tmp_path / "run")],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=no_files,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ulimit -f" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
