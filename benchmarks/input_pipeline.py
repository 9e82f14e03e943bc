"""Speed of the training input path alone, against the rate at which the model consumes images
(a ``benchmarks.throughput`` report's Keras row, ``--against``, else a short Keras run here):
``train.py`` makes batches between steps, so the input path should be ``TARGET`` times faster."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import jax
import numpy as np

from benchmarks import common
from keras_resnet.augment import RandomCropFlip
from keras_resnet.trainer.data import CifarBatches, Split, load_folder

TARGET = 5.0


def rate(images: int, batches: int, seconds: float) -> dict:
    return {"images": images, "images_per_s": images / seconds,
            "ms_per_batch": 1000 * seconds / batches if batches else None}  # fmt: skip


def time_epochs(split: Split, batch_size: int, repeats: int) -> dict:
    """Training epochs of ``CifarBatches`` (shuffle and gather), the median of ``repeats``."""
    batches = CifarBatches(split, batch_size, train=True, seed=0)
    timed = common.epochs_of(batches, repeats)
    seconds = statistics.median(end[0] - start[0] for start, end, _ in timed)
    return rate(len(split), len(batches), seconds)


def time_augmentation(batch_size: int, repeats: int, batches: int = 200) -> dict:
    """RandomCropFlip with cutout 12 alone, jitted on the default JAX device."""
    layer = RandomCropFlip(cutout=12, seed=0)
    images = jax.device_put(common.generated_batches(batch_size)[0].astype(np.float32))
    layer.build(images.shape)
    step = jax.jit(lambda s, x: layer.stateless_call([], [s], x, training=True))
    state = [layer.step.value]

    def run():
        for _ in range(batches):
            out, state[:] = step(state[0], images)
        jax.block_until_ready(out)

    return rate(batches * batch_size, batches, common.median_seconds(run, repeats))


def time_folder(images: int, batch_size: int, repeats: int) -> dict[str, dict]:
    """``load_folder`` decoding ``images`` 64x64 JPEGs (and a test split), then them streamed."""
    with tempfile.TemporaryDirectory() as root:
        common.image_folder(Path(root), images, 64, ".jpg")
        seconds = common.median_seconds(lambda: load_folder(root), 1)  # the first imports TF
        streamed = load_folder(root, max_memory_gb=1e-9).train
        return {"load_folder into memory (list, check sizes, decode all)":
                rate(len(list(Path(root).rglob("*.jpg"))), 0, seconds),
                "CifarBatches over FolderImages (streamed)":
                time_epochs(streamed, batch_size, repeats)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="for the Keras measurement")
    parser.add_argument("--batch-size", type=common.positive_int, default=128)
    parser.add_argument("--images", type=common.positive_int, default=50_000, help="per epoch")
    parser.add_argument("--repeats", type=common.positive_int, default=3, help="epochs, median")
    parser.add_argument("--against", help="a benchmarks.throughput report with the model's rate")
    parser.add_argument("--folder", type=common.positive_int, metavar="N", help="N JPEGs, too")
    parser.add_argument("--json", help="default: benchmarks/results/input_pipeline.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        against = args.against or str(Path(tmp, "throughput.json"))
        if not args.against:  # a short Keras run of the model, as a throughput report
            subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--model", args.model,
                            "--batch-size", str(args.batch_size), "--steps", "3", "--eval-steps",
                            "0", "--frameworks", "keras", "--json", against],
                           check=True)  # fmt: skip
        report = json.loads(Path(against).read_text())
    keras_rate = report["results"]["keras"]["train_images_per_s"]
    data, batch = Split(*common.generated_batches(args.images)), args.batch_size
    paths = {
        "CifarBatches train=True (shuffle + gather), host": time_epochs(data, batch, args.repeats),
        "RandomCropFlip + cutout 12, jitted on the device": time_augmentation(batch, args.repeats),
    }
    if args.folder:
        paths.update(time_folder(args.folder, batch, args.repeats))
    cells = []
    for name, row in paths.items():
        x, ms = row["images_per_s"] / keras_rate, row["ms_per_batch"]
        cells.append([name, common.fmt_rate(row["images_per_s"]),
                      "-" if ms is None else f"{ms:.2f}", f"{x:,.1f}x",
                      "yes" if x >= TARGET else "NO"])  # fmt: skip
    columns = ["input path", "images/s", "ms/batch", "x Keras train rate", f"target >= {TARGET:g}x"]
    consumer = {key: report[key] for key in ("model", "batch_size", "precision")}
    consumer.update(source=args.against or "measured now, 3 steps", keras_images_per_s=keras_rate)
    settings = {"images": args.images, "batch_size": batch, "repeats": args.repeats,
                "consumer": f"Keras fit trains {report['model']} at {common.fmt_rate(keras_rate)}"
                f" img/s (batch {report['batch_size']}, {report['precision']}) - "
                f"{consumer['source']}"}  # fmt: skip
    common.publish("input_pipeline", args.json, settings, common.markdown(columns, "lrrrl", cells),
                   input=paths, consumption=consumer)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
