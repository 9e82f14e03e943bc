"""The trainer's host cost per step: ``train()`` with a one-dense-layer model (a step that costs
next to nothing) beside a bare ``model.fit`` and a jitted JAX loop of it; each row in a process
of its own (``--quick``: one for the rows on each set of devices), skipped if it needs a missing
TensorFlow. docs/performance.md#host-cost-per-step says what ms/step and CPU ms/step measure."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import common

TARGET_MS = 0.5  # the host cost per step the trainer is held under, in every configuration
TARGET_VS_FIT = 2.0  # ... and at most twice a bare model.fit's
# The virtual CPU devices of the rows named *-devices. XLA's in-process all-reduce needs a thread
# per device at once: with more devices than cores a busy machine can deadlock it (--devices).
DEVICES = 4
STREAMED_GB = 1e-6  # --max-memory-gb below the folder's size: its batches are decoded as read
NEEDS_TENSORFLOW = ("trainer-tensorboard", "trainer-folder", "folder-decode")


def summary(epochs: list) -> dict:
    """A row from each epoch's (start clocks, end clocks, steps): ms/step, wall-clock and CPU,
    of each epoch and their median over the epochs after the first (which compiles)."""
    row = {"steps_per_epoch": epochs[0][2]}
    for key, clock in (("step_ms", 0), ("cpu_ms", 1)):
        row[f"{key}_epochs"] = [1000 * (end[clock] - start[clock]) / n for start, end, n in epochs]
        row[key] = statistics.median(row[f"{key}_epochs"][1:])
    return row


def tiny_model(config, steps_per_epoch: int, data):
    """One dense layer on the flattened image, compiled as the trainer compiles: a ``build``."""
    import keras

    from keras_resnet.trainer.fit import compile_model

    inputs = keras.Input(data.image_shape, dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(len(data.class_names), name="predictions")(x)
    return compile_model(keras.Model(inputs, outputs, name="tiny"), config, steps_per_epoch)


def time_keras(name: str, epochs: int, batch_size: int, devices: int = 1) -> dict:
    """``train()`` as ``train.py`` runs it with ``tiny_model`` (its log written as train.py
    writes it, kept out of the table), or for ``keras-fit`` a bare ``model.fit`` of that model
    on numpy arrays, no callbacks but the clock."""
    from keras_resnet.trainer import distributed
    from keras_resnet.trainer.config import TrainConfig
    from keras_resnet.trainer.data import synthetic_cifar10
    from keras_resnet.trainer.fit import train

    topology = distributed.setup(devices)
    clock, log = common.epoch_clock(), io.StringIO()
    if name.startswith("keras-fit"):
        data = synthetic_cifar10()
        model = tiny_model(TrainConfig(batch_size=batch_size), len(data.train) // batch_size, data)
        model.fit(data.train.images, data.train.labels, batch_size, epochs, verbose=0,
                  callbacks=[clock])  # fmt: skip
        return summary(clock.epochs)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(log):
        settings = {"synthetic": True}
        if name == "trainer-folder":
            common.image_folder(Path(tmp, "images"), 2048, 32, ".png")
            settings = {"dataset": f"folder:{Path(tmp, 'images')}", "max_memory_gb": STREAMED_GB}
        config = TrainConfig(**settings, epochs=epochs, batch_size=batch_size,
                             output_dir=str(Path(tmp, "runs")),
                             log_format="keras" if name == "trainer-keras-log" else "note",
                             tensorboard=name == "trainer-tensorboard")  # fmt: skip
        train(config, topology=topology, callbacks=[clock], build=tiny_model)
    return {**summary(clock.epochs), "log_lines": log.getvalue().count("\n")}


def time_loop(name: str, epochs: int, batch_size: int, devices: int = 1) -> dict:
    """A plain loop over the trainer's batches: ``folder-decode`` reads the streamed folder's (the
    decoding ``trainer-folder`` cannot go below here); ``jax`` trains the dense layer on them by
    plain SGD in a jitted step (the least a step of this model can cost the host)."""
    import jax
    import jax.numpy as jnp

    from keras_resnet.trainer.data import CifarBatches, load_folder, synthetic_cifar10

    if name == "folder-decode":
        with tempfile.TemporaryDirectory() as tmp:
            common.image_folder(Path(tmp), 2048, 32, ".png")
            folder = load_folder(tmp, max_memory_gb=STREAMED_GB)
            return summary(common.epochs_of(CifarBatches(folder.train, batch_size, True), epochs))
    train = synthetic_cifar10().train
    params = [jnp.zeros((train.images[0].size, 10)), jnp.zeros(10)]

    @jax.jit
    def step(params, images, labels):
        def loss(params):
            logits = images.reshape(len(images), -1) / 255 @ params[0] + params[1]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        return [p - 0.01 * g for p, g in zip(params, jax.grad(loss)(params), strict=True)]

    def train_step(images, labels):
        params[:] = step(params, images, labels)
        return params

    batches = CifarBatches(train, batch_size, train=True)
    return summary(common.epochs_of(batches, epochs, train_step))


ROWS = {  # name: what the table calls it, and what times it
    "jax": ("plain jitted JAX loop, host batches", time_loop),
    "keras-fit": ("bare model.fit on numpy arrays", time_keras),
    "keras-fit-devices": ("bare model.fit, {devices} virtual CPU devices", time_keras),
    "trainer-note": ("train(): note recipe, its log", time_keras),
    "trainer-keras-log": ("train(): --log-format keras", time_keras),
    "trainer-tensorboard": ("train(): --tensorboard", time_keras),
    "trainer-devices": ("train(): --devices {devices} (virtual CPU devices)", time_keras),
    "trainer-folder": ("train(): streamed image folder", time_keras),
    "folder-decode": ("the same folder's batches, decoded alone", time_loop),
}


def label(name: str, devices: int) -> str:
    """A row's name in the table."""
    return ROWS[name][0].format(devices=devices)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs a row: checks, not figures")
    at_least_2 = functools.partial(common.positive_int, minimum=2)
    parser.add_argument("--epochs", type=at_least_2, help="a row's; the first is untimed (8)")
    parser.add_argument("--batch-size", type=common.positive_int, default=8, help="a multiple of 4")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=ROWS, help="some of them")
    parser.add_argument("--devices", type=common.positive_int, default=DEVICES,
                        help=f"of the *-devices rows (default {DEVICES})")  # fmt: skip
    parser.add_argument("--rounds", type=common.positive_int, default=1, help="median of")
    parser.add_argument("--json", help="default: benchmarks/results/host_overhead.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 8)
    if args.worker:
        if args.worker.endswith("-devices"):  # a unit's rows all are on them or none is
            flag = f"--xla_force_host_platform_device_count={args.devices}"  # read as JAX starts
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}"
            os.environ["JAX_PLATFORMS"] = "cpu"
        import jax

        import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

        first = jax.devices()[0]
        device = f"{first.platform} ({first.device_kind}) x {jax.device_count()}"
        devices = {n: args.devices if n.endswith("-devices") else 1 for n in ROWS}
        rows = {n: ROWS[n][1](n, args.epochs, args.batch_size, devices[n])
                for n in args.worker.split(",")}  # fmt: skip
        common.send_result({name: {**row, "device": device} for name, row in rows.items()})
        return 0
    missing = importlib.util.find_spec("tensorflow") is None
    units = [n for n in ROWS if n in args.rows and not (missing and n in NEEDS_TENSORFLOW)]
    if args.quick:  # a check: a process for the rows on each set of devices
        units = [",".join(n for n in units if n.endswith("-devices") == on) for on in (False, True)]
    argv = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--devices", str(args.devices)]  # fmt: skip
    found = common.run_rows("host_overhead", [u for u in units if u], argv, args.rounds,
                            ("step_ms", "cpu_ms"))  # fmt: skip
    rows = {n: found.get(n, {"skipped": "needs TensorFlow"}) for n in ROWS if n in args.rows}
    cells = []
    for name, row in rows.items():
        if "step_ms" not in row:
            why = row.get("skipped") or f"failed: {row['error'].splitlines()[-1][:100]}"
            cells.append([label(name, args.devices), "-", "-", "-", why])
            continue
        fit = rows.get("keras-fit-devices" if name == "trainer-devices" else "keras-fit", {})
        ratio = row["step_ms"] / fit["step_ms"] if "step_ms" in fit else None
        met = row["step_ms"] <= TARGET_MS and (ratio is None or ratio <= TARGET_VS_FIT)
        meets = ("yes" if met else "no") if name.startswith("trainer") else ""
        shown = "-" if ratio is None else f"{ratio:.2f}"
        cells.append([label(name, args.devices), f"{row['step_ms']:.3f}", f"{row['cpu_ms']:.3f}",
                      shown, meets])  # fmt: skip
    target = f"<= {TARGET_MS:g} ms and <= {TARGET_VS_FIT:g}x fit"
    columns = ["configuration", "ms/step", "CPU ms/step", "x bare fit", target]
    device = next((r["device"] for r in rows.values() if "device" in r), "unknown")
    settings = {"batch_size": args.batch_size, "epochs": args.epochs, "rounds": args.rounds,
                "device": device}  # fmt: skip
    common.publish("host_overhead", args.json, settings, common.markdown(columns, "lrrrl", cells),
                   rows=rows)  # fmt: skip
    return 0 if not any("error" in r for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
