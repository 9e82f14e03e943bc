"""Data-parallel training: N devices and N processes compute what one device computes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_resnet.trainer import distributed

WORKER = Path(__file__).with_name("_distributed_worker.py")
# Both end-to-end tests compare with the one-device reference run: on one worker, it runs once.
pytestmark = pytest.mark.xdist_group("distributed")


def run_worker(
    *args: str, env: dict | None = None, name: str = "worker"
) -> tuple[subprocess.Popen, Path]:
    """Start a worker; its output goes to a file, so two workers never block on a full pipe."""
    # Compiled as a user's run is: XLA's quick compilation can deadlock an all-reduce on virtual
    # CPU devices.
    environment = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "0",
        **(env or {}),
    }
    log = Path(args[0]).parent / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), *args], env=environment, stdout=out, stderr=out
        )
    return process, log


def result(worker: tuple[subprocess.Popen, Path]) -> dict:
    process, log = worker
    process.wait(timeout=300)
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def assert_same_weights(a: dict, b: dict) -> None:
    """Equal up to float rounding: after 8 steps the partitioned program (its gathers and
    convolutions laid out per device) differs from one device's by at most ~1.3e-4 (measured;
    1e-7 without the augmentation layer), while other crops alone move them by up to 7e-2.
    The step losses agree to ~1e-6."""
    for x, y in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=4e-4)


@pytest.fixture(scope="module")
def one_and_two_devices(tmp_path_factory) -> tuple[dict, dict]:
    """The one-device reference and a run on two virtual devices in one process, side by side.

    No more devices than the machine's two cores: XLA's in-process all-reduce needs a thread per
    device at once, and with four a busy 2-core machine can deadlock it."""
    one = run_worker(str(tmp_path_factory.mktemp("one") / "run"), "1")
    two = run_worker(
        str(tmp_path_factory.mktemp("two") / "run"),
        "2",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    return result(one), result(two)


@pytest.fixture(scope="module")
def one_device(one_and_two_devices) -> dict:
    return one_and_two_devices[0]


@pytest.mark.slow
def test_two_devices_train_like_one_with_the_same_global_batch(one_and_two_devices):
    one_device, two = one_and_two_devices
    assert two["devices"] == 2
    assert two["losses"] == pytest.approx(one_device["losses"], rel=1e-5)
    assert_same_weights(two, one_device)


def free_port() -> int:
    with socket.socket() as probe:  # a free port on this machine for the coordinator
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_processes(run_dir: str, how: str, env: dict | None = None) -> list:
    """Start processes 0 and 1 of a cluster, told by command-line flags or by environment."""
    coordinator = f"127.0.0.1:{free_port()}"
    if how == "flags":
        return [
            run_worker(run_dir, "all", coordinator, "2", str(i), env=env, name=f"process-{i}")
            for i in (0, 1)
        ]
    return [
        run_worker(
            run_dir,
            "all",
            env={
                **(env or {}),
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": coordinator,
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": str(i),
            },
            name=f"process-{i}",
        )
        for i in (0, 1)
    ]


def assert_trained_together_like_one(first: dict, second: dict, one_device: dict) -> None:
    """Processes 0 and 1 of two devices end where one device ends; only process 0 writes."""
    assert (first["process_id"], second["process_id"]) == (0, 1)
    assert first["devices"] == second["devices"] == 2
    assert first["losses"] == second["losses"] == pytest.approx(one_device["losses"], rel=1e-5)
    assert_same_weights(first, one_device)
    assert_same_weights(second, first)
    assert first["writes"] > 0 and second["writes"] == 0


@pytest.mark.slow
def test_a_two_process_run_stopped_and_resumed_trains_like_one_device(tmp_path, one_device):
    """Epoch 1 on processes told by Keras's environment variables, a stop, then epoch 2
    resumed on both processes told by command-line flags: they end where one device ends."""
    run_dir = str(tmp_path / "run")
    stopped = two_processes(run_dir, "environment", {"STOP_AFTER_FIRST_EPOCH": "1"})
    for process_id, (process, log) in enumerate(stopped):
        process.wait(timeout=300)
        assert f"INTERRUPTED [{process_id}, 2]" in log.read_text(), log.read_text()[-3000:]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_done"] == 1
    first, second = (result(worker) for worker in two_processes(run_dir, "flags"))
    assert_trained_together_like_one(first, second, one_device)
    assert_same_weights(second, one_device)


def test_a_batch_that_does_not_divide_over_the_devices_is_refused():
    with pytest.raises(ValueError, match="batch_size 130 does not divide over 4 devices"):
        distributed.check_batch_size(130, distributed.Topology(devices=4))
    distributed.check_batch_size(128, distributed.Topology(devices=4))


def test_more_devices_than_there_are_is_refused():
    with pytest.raises(ValueError, match="devices must be between 1 and 1, got 3"):
        distributed.setup(devices=3)


def test_multi_host_flags_come_together():
    with pytest.raises(ValueError, match="coordinator HOST:PORT, num_processes N and process_id"):
        distributed.setup(coordinator="127.0.0.1:1234")
    with pytest.raises(ValueError, match="process_id must be between 0 and 1, got 2"):
        distributed.setup(coordinator="127.0.0.1:1234", num_processes=2, process_id=2)
