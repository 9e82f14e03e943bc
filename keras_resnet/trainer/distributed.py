"""Data-parallel training on every local device and across hosts, with ``keras.distribution``.

The global batch is the ``--batch-size``; each process reads its own slice of every global
batch, and each device gets ``batch_size / devices`` images. BatchNorm statistics are those of
the whole global batch: under ``DataParallel`` the step is one XLA program over a sharded batch,
so the batch mean is reduced across devices, and a run on N devices computes what one device
would with the same global batch.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import keras

from keras_resnet.errors import ConfigError

ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


@dataclasses.dataclass(frozen=True)
class Topology:
    devices: int = 1
    process_id: int = 0
    num_processes: int = 1

    @property
    def is_chief(self) -> bool:
        """Only the first process writes checkpoints, reports and figures."""
        return self.process_id == 0


def setup(
    devices: int | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Topology:
    """Join the other processes (if any) and spread training over ``devices`` devices.

    With ``coordinator`` (``HOST:PORT``), ``num_processes`` and ``process_id`` unset, Keras reads
    ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
    ``KERAS_DISTRIBUTION_PROCESS_ID`` instead; with none of them, training stays in this process.
    """
    flags = (coordinator, num_processes, process_id)
    if all(flag is None for flag in flags) and os.environ.get(ENV_ADDRESSES):
        if not jax.distributed.is_initialized():
            keras.distribution.initialize()  # Keras reads its environment variables
    elif coordinator is not None or (num_processes or 1) > 1:
        if coordinator is None or num_processes is None or process_id is None:
            raise ConfigError(
                "coordinator",
                "HOST:PORT, num_processes N and process_id I are needed together for multi-host "
                f"training; got {coordinator!r}, {num_processes!r}, {process_id!r}",
            )
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                "process_id", f"must be between 0 and {num_processes - 1}, got {process_id}"
            )
        if not jax.distributed.is_initialized():
            keras.distribution.initialize(coordinator, num_processes, process_id)
    available = keras.distribution.list_devices()
    wanted = len(available) if devices is None else devices
    if not 1 <= wanted <= len(available):
        raise ConfigError("devices", f"must be between 1 and {len(available)}, got {devices}")
    if jax.process_count() > 1 and wanted != len(available):
        raise ConfigError(
            "devices", "must be left unset: multi-host training uses every device of every host"
        )
    keras.distribution.set_distribution(
        # CifarBatches shards the data itself (shard=(process, processes)).
        keras.distribution.DataParallel(devices=available[:wanted], auto_shard_dataset=False)
        if wanted > 1
        else None
    )
    return Topology(wanted, jax.process_index(), jax.process_count())


def check_batch_size(batch_size: int, topology: Topology) -> None:
    if batch_size % topology.devices:
        raise ConfigError(
            "batch_size",
            f"{batch_size} does not divide over {topology.devices} devices; "
            f"use a multiple of {topology.devices}",
        )
