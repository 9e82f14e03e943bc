"""The trainer's host cost per step: ``train()`` with a one-dense-layer model, whose step
costs next to nothing, beside a bare ``model.fit`` and a jitted JAX loop of the same model.

ms/step is the median over epochs (the first, which compiles, left out) of an epoch's steps
from the first's start to the last's end on the device; CPU ms/step is the CPU time of every
thread over the same span, which waiting for a busy core does not inflate. Each row runs in
its own process (XLA reads ``--xla_force_host_platform_device_count`` once); rows that need
TensorFlow are skipped where it is missing. See docs/performance.md#host-cost-per-step.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    RESULTS_DIR,
    device_slug,
    jax_device,
    positive_int,
    publish,
    rows_chosen,
    run_worker,
    send_result,
    utc_now,
)

TARGET_MS = 0.5  # the host cost per step the trainer is held under, in every configuration
TARGET_VS_FIT = 2.0  # ... and at most twice a bare model.fit's
DEVICES = 4  # the data-parallel row's virtual CPU devices
STREAMED_GB = 1e-6  # --max-memory-gb below the folder's size: its batches are decoded as read

# name -> (what it is, what it needs); workers look their row up by name.
ROWS = {
    "jax": ("plain jitted JAX loop, host batches", None),
    "keras-fit": ("bare model.fit on numpy arrays", None),
    "keras-fit-devices": (f"bare model.fit, {DEVICES} virtual CPU devices", "devices"),
    "trainer-note": ("train(): note recipe, its log", None),
    "trainer-keras-log": ("train(): --log-format keras", None),
    "trainer-tensorboard": ("train(): --tensorboard", "tensorflow"),
    "trainer-devices": (f"train(): --devices {DEVICES} (virtual CPU devices)", "devices"),
    "trainer-folder": ("train(): streamed image folder", "tensorflow"),
    "folder-decode": ("the same folder's batches, decoded alone", "tensorflow"),
}
BASELINE = "keras-fit"  # what each trainer row is compared with, unless named here
BASELINES = {"trainer-devices": "keras-fit-devices"}


def worker(name: str, epochs: int, batch_size: int) -> dict:
    """One row, timed in this process (``--worker NAME``)."""
    import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

    if name == "jax":
        row = time_jax(epochs, batch_size)
    elif name == "folder-decode":
        row = time_folder_decode(epochs, batch_size)
    elif name.startswith("keras-fit"):
        row = time_keras_fit(epochs, batch_size, DEVICES if ROWS[name][1] == "devices" else 1)
    else:
        row = time_trainer(name, epochs, batch_size)
    return {**row, "device": jax_device()}


def tiny_model(image_shape: tuple[int, ...], classes: int):
    """One dense layer on the flattened uint8 image: a step that costs next to nothing."""
    import keras

    inputs = keras.Input(image_shape, dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes, name="predictions")(x), name="tiny")


def epoch_clock():
    """A callback that keeps, per epoch, the start of its first step and the end of its last."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        """``async_safe`` like the trainer's batch callbacks: a step's end is recorded once
        Keras has its logs as numbers, that is once the device has finished it."""

        def __init__(self):
            super().__init__()
            self.async_safe = True
            self.epochs: dict[int, list] = {}

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.epochs[epoch] = [None, None, 0]

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.epochs[self.epoch][0] = clocks()

        def on_train_batch_end(self, batch, logs=None):
            record = self.epochs[self.epoch]
            now = clocks()
            if batch + 1 >= record[2]:  # batch ends may arrive out of order
                record[1], record[2] = now, batch + 1

        def summary(self, **extra) -> dict:
            return summary(list(self.epochs.values()), **extra)

    return EpochClock()


def clocks() -> tuple[float, float]:
    """Wall-clock and CPU seconds (every thread of this process): under load the first grows
    with the waits for a core, the second stays the work done."""
    return time.perf_counter(), time.process_time()


def summary(epochs: list[tuple], **extra) -> dict:
    """The row from each epoch's (start clocks, end clocks, steps): the median over the
    epochs after the first of ms/step, wall-clock and CPU, and each epoch's figures."""
    wall = [1000 * (end[0] - begin[0]) / steps for begin, end, steps in epochs]
    cpu = [1000 * (end[1] - begin[1]) / steps for begin, end, steps in epochs]
    return {
        "step_ms": statistics.median(wall[1:]),
        "cpu_ms": statistics.median(cpu[1:]),
        "step_ms_epochs": wall,
        "cpu_ms_epochs": cpu,
        "steps_per_epoch": epochs[0][2],
        **extra,
    }


def time_jax(epochs: int, batch_size: int) -> dict:
    """The same dense layer trained by plain SGD in a jitted step, fed numpy batches in a fresh
    order each epoch: the least a step of this model can cost the host."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from keras_resnet.trainer.data import synthetic_cifar10

    data = synthetic_cifar10()
    x, y, images = data.train.images, data.train.labels, len(data.train)
    params = (jnp.zeros((math.prod(x.shape[1:]), 10)), jnp.zeros(10))

    def loss_fn(params, images, labels):
        kernel, bias = params
        logits = images.reshape(len(images), -1).astype(jnp.float32) / 255 @ kernel + bias
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    @jax.jit
    def step(params, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads), loss

    steps = images // batch_size
    timed = []
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch]).permutation(images)
        started = clocks()
        for i in range(steps):
            batch = order[i * batch_size : (i + 1) * batch_size]
            params, loss = step(params, x[batch], y[batch])
        jax.block_until_ready(loss)
        timed.append((started, clocks(), steps))
    return summary(timed)


def time_keras_fit(epochs: int, batch_size: int, devices: int) -> dict:
    """``model.fit`` on numpy arrays, the trainer's compile, no callbacks but the clock; data
    parallel over ``devices`` as the trainer sets it up."""
    from keras_resnet.trainer import distributed
    from keras_resnet.trainer.config import TrainConfig
    from keras_resnet.trainer.data import synthetic_cifar10
    from keras_resnet.trainer.fit import compile_model

    data = synthetic_cifar10()
    x, y = data.train.images, data.train.labels
    config = TrainConfig(synthetic=True, batch_size=batch_size)
    distributed.setup(devices)
    steps = -(-len(x) // batch_size)
    model = compile_model(tiny_model(x.shape[1:], len(data.class_names)), config, steps)
    clock = epoch_clock()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[clock])
    return clock.summary()


def write_folder(root: Path) -> None:
    """The synthetic set as a folder, ``root/{train,test}/<class>/*.png``."""
    from PIL import Image

    from keras_resnet.trainer.data import synthetic_cifar10

    data = synthetic_cifar10()
    for split, part in (("train", data.train), ("test", data.test)):
        for i, (image, label) in enumerate(zip(part.images, part.labels, strict=True)):
            folder = root / split / data.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")


def time_folder_decode(epochs: int, batch_size: int) -> dict:
    """An epoch's batches of the streamed folder read one after another, with no model: the
    decoding that ``trainer-folder`` cannot go below on this host."""
    from keras_resnet.trainer.data import CifarBatches, load_folder

    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp))
        data = load_folder(tmp, max_memory_gb=STREAMED_GB)
        batches = CifarBatches(data.train, batch_size, train=True)
        timed = []
        for epoch in range(epochs):
            batches.set_epoch(epoch)
            started = clocks()
            for index in range(len(batches)):
                batches[index]
            timed.append((started, clocks(), len(batches)))
    return summary(timed)


def time_trainer(name: str, epochs: int, batch_size: int) -> dict:
    """``train()`` as ``train.py`` runs it, with the dense model built in ``build_model``'s
    place and compiled as it compiles."""
    import contextlib
    import io

    from keras_resnet.trainer import distributed
    from keras_resnet.trainer.config import TrainConfig
    from keras_resnet.trainer.fit import compile_model, train

    def build(config, steps_per_epoch, data):
        model = tiny_model(data.image_shape, len(data.class_names))
        return compile_model(model, config, steps_per_epoch)

    with tempfile.TemporaryDirectory() as tmp:
        settings = {"synthetic": True}
        if name == "trainer-folder":
            write_folder(Path(tmp) / "images")
            settings = {"dataset": f"folder:{Path(tmp) / 'images'}", "max_memory_gb": STREAMED_GB}
        config = TrainConfig(
            **settings,
            epochs=epochs,
            batch_size=batch_size,
            output_dir=str(Path(tmp) / "runs"),
            log_format="keras" if name == "trainer-keras-log" else "note",
            tensorboard=name == "trainer-tensorboard",
        )
        topology = distributed.setup(DEVICES if name == "trainer-devices" else 1)
        clock = epoch_clock()
        log = io.StringIO()  # the log is written as train.py writes it, and kept out of the table
        with contextlib.redirect_stdout(log):
            train(config, topology=topology, callbacks=[clock], build=build)
    return clock.summary(log_lines=log.getvalue().count("\n"))


def run_row(name: str, args: argparse.Namespace) -> dict:
    """``name`` in a fresh process; its row, or the reason it did not run."""
    if ROWS[name][1] == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        return {"skipped": "needs TensorFlow, not installed here"}
    env = dict(os.environ)
    if ROWS[name][1] == "devices":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={DEVICES}".strip()
        env.setdefault("JAX_PLATFORMS", "cpu")  # virtual devices are CPU devices
    argv = ["--worker", name, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    return run_worker("host_overhead", argv, env)


def markdown_table(rows: dict[str, dict]) -> str:
    """ms/step beside the bare fit, and each target met or not."""
    lines = [
        "| configuration | ms/step | CPU ms/step | x bare fit | "
        f"<= {TARGET_MS:g} ms and <= {TARGET_VS_FIT:g}x fit |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        label = ROWS[name][0]
        if "step_ms" not in row:
            why = row.get("skipped") or f"failed: {row['error'].splitlines()[-1][:100]}"
            lines.append(f"| {label} | - | - | - | {why} |")
            continue
        base = rows.get(BASELINES.get(name, BASELINE), {}).get("step_ms")
        ratio = row["step_ms"] / base if base else None
        meets = ""
        if name.startswith("trainer"):
            met = row["step_ms"] <= TARGET_MS and (ratio is None or ratio <= TARGET_VS_FIT)
            meets = "yes" if met else "no"
        shown = f"{ratio:.2f}" if ratio is not None else "-"
        lines.append(
            f"| {label} | {row['step_ms']:.3f} | {row['cpu_ms']:.3f} | {shown} | {meets} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs a row: checks, not figures")
    parser.add_argument("--epochs", type=positive_int, help="per row, the first untimed (8)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="a multiple of 4")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"some of {', '.join(ROWS)}")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="runs of each row, interleaved (median)"
    )
    parser.add_argument("--json", help="default: benchmarks/results/host_overhead-<device>.json")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 8)
    if args.epochs < 2:
        parser.error("--epochs: at least 2, the first compiles and is not timed")
    if args.batch_size % DEVICES:
        parser.error(f"--batch-size: a multiple of {DEVICES}, for the --devices {DEVICES} row")
    args.rows = rows_chosen(parser, args.rows, ROWS)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        send_result(worker(args.worker, args.epochs, args.batch_size))
        return 0

    runs: dict[str, list[dict]] = {name: [] for name in args.rows}
    for round_ in range(args.rounds):  # interleaved: a busy spell hits every row alike
        for name in args.rows:
            print(f"[{name}] round {round_ + 1} ...", file=sys.stderr, flush=True)
            runs[name].append(run_row(name, args))
    rows = {name: combine(found) for name, found in runs.items()}
    device = next((r["device"] for r in rows.values() if "device" in r), {})
    header = (
        f"host cost per step, a one-dense-layer model at batch {args.batch_size}, "
        f"{args.epochs} epochs a row (the first untimed) x {args.rounds} round(s); JAX "
        f"{device.get('platform')} ({device.get('device_kind')}); {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}; {utc_now()}"
    )
    path = Path(args.json or RESULTS_DIR / f"host_overhead-{device_slug(device)}.json")
    publish("host_overhead", path, header, markdown_table(rows), device=device, rows=rows,
            batch_size=args.batch_size, epochs=args.epochs, rounds=args.rounds)  # fmt: skip
    return 0 if not any("error" in r for r in rows.values()) else 1


def combine(found: list[dict]) -> dict:
    """One row from its rounds: the median ms/step of those that ran, else the first failure."""
    ran = [r for r in found if "step_ms" in r]
    if not ran:
        return found[0]
    return {
        **ran[0],
        "step_ms": statistics.median(r["step_ms"] for r in ran),
        "cpu_ms": statistics.median(r["cpu_ms"] for r in ran),
        "step_ms_rounds": [r["step_ms"] for r in ran],
        "cpu_ms_rounds": [r["cpu_ms"] for r in ran],
    }


if __name__ == "__main__":
    sys.exit(main())
