"""What the benchmarks share, with no framework imported at the top (PyTorch workers use it):
rows timed in fresh processes (XLA reads its flags once a process; compile caches and memory
peaks must not carry over), timing loops, tables and reports."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from keras_resnet.trainer import io

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
NUM_CLASSES = 10
RESULT = "RESULT "  # a worker's last line: this, then its rows as JSON
LOAD_AT_START = os.getloadavg()[0]  # a benchmark imports this module as it starts


def positive_int(text: str, minimum: int = 1) -> int:
    if int(text) < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {text}")
    return int(text)


def clocks() -> tuple[float, float]:
    """Wall-clock and CPU seconds (every thread of this process): under load the first grows
    with the waits for a core, the second stays the work done."""
    return time.perf_counter(), time.process_time()


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median seconds of ``repeats`` calls of ``run`` after one that compiles, warms up."""
    run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def epochs_of(batches, epochs: int, step=None, sync=None) -> list[tuple]:
    """Epochs of a ``CifarBatches`` read in a plain loop, each batch handed to ``step`` if given,
    the clock stopped once ``sync(its output)`` returns (by default once JAX has finished): each
    epoch's (start clocks, end clocks, steps), as ``epoch_clock`` keeps them."""
    import jax

    timed = []
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        started = clocks()
        for index in range(len(batches)):
            out = step(*batches[index]) if step else batches[index]
        (sync or jax.block_until_ready)(out)  # the last step: JAX runs them in order
        timed.append((started, clocks(), len(batches)))
    return timed


def epoch_clock():
    """A Keras callback that keeps each epoch of ``fit`` (each ``evaluate``) in ``.epochs``, as
    (start clocks, end clocks, steps). ``async_safe`` like the trainer's callbacks, it sees a
    step end once its logs are numbers (the device has finished it), on a thread, out of order."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.async_safe, self.epochs = True, []

        def on_train_batch_begin(self, batch, logs=None):  # on the main thread, in order
            if batch == 0:
                self.epochs.append([clocks(), None, 0])

        def on_train_batch_end(self, batch, logs=None):
            now, epoch = clocks(), self.epochs[-1]
            if batch + 1 >= epoch[2]:
                epoch[1:] = now, batch + 1

        on_test_batch_begin, on_test_batch_end = on_train_batch_begin, on_train_batch_end

    return EpochClock()


def generated_batches(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and int32 labels: speed does not depend on the pixels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, NUM_CLASSES, size=n_images).astype(np.int32)


def image_folder(root: Path, images: int, size: int, suffix: str) -> None:
    """Smooth random pictures, ``size`` pixels a side, as a folder dataset: ``images`` in
    ``root/train/class<k>/`` and a tenth as many (10 at least) in ``root/test``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("test", max(10, images // 10))):
        for i in range(count):
            (root / split / f"class{i % 10}").mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
            picture = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
            picture.save(root / split / f"class{i % 10}" / f"{i}{suffix}")


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run_worker(module: str, argv: list[str]) -> dict:
    """``python -m benchmarks.<module> ARGV``'s last ``RESULT``, or its output's end as an error."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *argv], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if not lines:
        return {"error": f"exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}"}
    return json.loads(lines[-1][len(RESULT) :])


def send_result(result: dict) -> None:  # a worker's answer to run_worker
    print(RESULT + json.dumps(result, default=str), flush=True)


def run_rows(module: str, units: list[str], argv: list[str], rounds: int = 1,
             keys: tuple[str, ...] = ()) -> dict[str, dict]:  # fmt: skip
    """The rows of ``python -m benchmarks.<module> --worker UNIT ARGV`` (a unit: its rows' names
    joined by commas), every unit once a round so that a busy spell falls on all alike: each
    row's round with the median ``keys[0]``, every round's ``keys`` in ``<key>_rounds``."""
    runs: dict[str, list[dict]] = {}
    for number in range(rounds):
        for unit in units:
            print(f"round {number + 1} of {rounds}: {unit}", file=sys.stderr, flush=True)
            found = run_worker(module, ["--worker", unit, *argv])
            for name in unit.split(","):
                runs.setdefault(name, []).append(found if "error" in found else found[name])
    rows = {}
    for name, found in runs.items():
        ran = sorted((row for row in found if keys and keys[0] in row), key=lambda r: r[keys[0]])
        rows[name] = ran[(len(ran) - 1) // 2] if ran else found[0]
        if ran:
            rows[name].update({f"{k}_rounds": [row[k] for row in found if k in row] for k in keys})
    return rows


def markdown(columns: list[str], align: str, rows: Iterable[list]) -> str:
    """A markdown table; ``align`` has an ``l`` (left) or ``r`` (right) for each column."""
    rule = "|".join("---:" if side == "r" else "---" for side in align)
    body = [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]
    return "\n".join([f"| {' | '.join(columns)} |", f"|{rule}|", *body])


def publish(benchmark: str, path: str | None, settings: dict, table: str, notes=(), **fields):
    """Prints the settings, the host and its load, the table and any notes (and a warning if the
    host was busy: CPU-bound figures are then noisy); writes them and ``fields`` as the JSON
    report at ``path``, by default ``benchmarks/results/<benchmark>.json``."""
    cores, load = os.cpu_count() or 1, [round(LOAD_AT_START, 2), round(os.getloadavg()[0], 2)]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = f"{benchmark}: " + ", ".join(f"{k} {v}" for k, v in settings.items())
    header += f"\nhost: {cores} CPU cores, load average {load[0]:.1f} -> {load[1]:.1f}; {date}"
    if max(load) > 0.5 * cores:
        notes = [*notes, "warning: the host was busy: CPU-bound figures are noisy"]
    print(f"{header}\n\n{table}" + "".join(f"\n{line}" for line in ["", *notes] if notes))
    host = {"cpu_count": cores, "python": platform.python_version(), "load_average_1min": load}
    report = {"benchmark": benchmark, "date": date, "host": host, **settings, **fields}
    path = Path(path or RESULTS_DIR / f"{benchmark}.json")
    io.write_json(path, {**report, "header": header, "table": table})  # a kill leaves the last
    print(f"\nwrote {path}")
