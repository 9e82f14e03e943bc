"""Speed of the training input path alone, against the rate at which the model consumes images.

Run from the repository root (no TensorFlow, no download: the images are generated)::

    python -m benchmarks.input_pipeline --model resnet18
    python -m benchmarks.input_pipeline --against benchmarks/results/throughput-resnet18-cpu.json

The host side of the input path is ``keras_resnet.trainer.data.CifarBatches`` as ``train.py`` uses
it: ``train=True`` (per-epoch permutation, then a gather of uint8 images per batch) over a full
epoch of ``--images`` images (50,000, CIFAR-10's training set) at ``--batch-size``, timed with
``set_epoch`` included. ``train=False`` (plain slicing, the evaluation path) is timed too. The
augmentation (4-pixel padded crop, flip, and cutout in the fast recipe) is a layer of the model,
``RandomCropFlip``, so it runs inside the compiled step on the device; it is timed alone too,
jitted on the default JAX device (its cost is already part of the model's training rate).

The consumption rate is the Keras training rate from a ``benchmarks.throughput`` JSON
(``--against``), or, without one, a short ``benchmarks.throughput --frameworks keras`` run for
``--model``. The target is an input path at least 5x faster than the model consumes: in
``train.py`` the batches are made in the main thread between steps, so their time adds to every
step unless the input path is much faster than the step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import jax
import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    fmt_rate,
    generated_batches,
    positive_int,
    run_module,
    slug,
    tensorflow_imported,
    utc_now,
    write_report,
)
from keras_resnet.augment import RandomCropFlip
from keras_resnet.trainer.data import CifarBatches, Split

TARGET = 5.0


def time_epochs(split: Split, batch_size: int, train: bool, repeats: int, seed: int) -> dict:
    """Images/s of ``repeats`` full epochs of CifarBatches (median), set_epoch included."""
    batches = CifarBatches(split, batch_size, train=train, seed=seed)
    seconds = []
    for epoch in range(repeats):
        started = time.perf_counter()
        batches.set_epoch(epoch)
        for index in range(len(batches)):
            images, _ = batches[index]
        seconds.append(time.perf_counter() - started)
    assert images.dtype.name == "uint8" and images.shape[1:] == (32, 32, 3)
    median = statistics.median(seconds)
    return {
        "images": len(split),
        "batches": len(batches),
        "seconds": seconds,
        "images_per_s": len(split) / median,
        "ms_per_batch": 1000 * median / len(batches),
    }


def time_device_augmentation(batch_size: int, repeats: int, cutout: int = 12) -> dict:
    """Images/s of RandomCropFlip (with cutout) alone, jitted on the default JAX device."""
    layer = RandomCropFlip(cutout=cutout, seed=0)
    images = jax.device_put(generated_batches(batch_size)[0].astype(np.float32))
    layer.build(images.shape)
    step = jax.jit(lambda s, x: layer.stateless_call([], [s], x, training=True))
    out, (state,) = step(layer.step.value, images)  # compile
    jax.block_until_ready(out)
    batches = 200
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(batches):
            out, (state,) = step(state, images)
        jax.block_until_ready(out)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {
        "images": batches * batch_size,
        "batches": batches,
        "seconds": seconds,
        "images_per_s": batches * batch_size / median,
        "ms_per_batch": 1000 * median / batches,
        "device": str(jax.devices()[0]),
    }


def consumption_rates(args: argparse.Namespace) -> tuple[dict, str]:
    """Training images/s per framework, from --against or a short Keras measurement."""
    if args.against:
        report = json.loads(Path(args.against).read_text())
        source = f"{args.against} ({report.get('model')}, {report.get('device')})"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "throughput.json")
            argv = [
                "--model", args.model, "--batch-size", str(args.batch_size),
                "--precision", args.precision, "--frameworks", "keras",
                "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--eval-steps", "0", "--json", out,
            ]  # fmt: skip
            print(f"measuring Keras training of {args.model} ...", file=sys.stderr, flush=True)
            proc = run_module("throughput", argv)
            if not os.path.exists(out):
                sys.exit(f"benchmarks.throughput failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            report = json.loads(Path(out).read_text())
        source = (
            f"measured now: benchmarks.throughput --frameworks keras, {args.steps} steps "
            f"({report.get('device')})"
        )
    rates = {
        name: row["train_images_per_s"]
        for name, row in report.get("results", {}).items()
        if isinstance(row, dict) and row.get("train_images_per_s")
    }
    if "keras" not in rates:
        sys.exit(f"no Keras training rate in {source}")
    report_info = {
        "model": report.get("model"),
        "batch_size": report.get("batch_size"),
        "precision": report.get("precision"),
        "device": report.get("device"),
        "device_slug": report.get("device_slug", "unknown"),
    }
    return {"source": source, "rates": rates, **report_info}, source


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="for the Keras measurement")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--images", type=positive_int, default=50_000, help="images per epoch")
    parser.add_argument("--repeats", type=positive_int, default=3, help="epochs timed (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--against", help="a throughput.py JSON with the model's rates")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--steps", type=positive_int, default=3, help="without --against")
    parser.add_argument("--warmup", type=positive_int, default=1, help="without --against")
    parser.add_argument(
        "--json", help="default: benchmarks/results/input_pipeline-<model>-<device>.json"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    consumer, source = consumption_rates(args)
    keras_rate = consumer["rates"]["keras"]

    images, labels = generated_batches(args.images, seed=args.seed)
    split = Split(images, labels)
    paths = {
        "CifarBatches train=True (shuffle + gather), host": time_epochs(
            split, args.batch_size, True, args.repeats, args.seed
        ),
        "CifarBatches train=False (slices only), host": time_epochs(
            split, args.batch_size, False, args.repeats, args.seed
        ),
        "RandomCropFlip + cutout 12, jitted on the device": time_device_augmentation(
            args.batch_size, args.repeats
        ),
    }
    train_path = next(iter(paths.values()))
    ratio = train_path["images_per_s"] / keras_rate
    # train.py makes each batch in the main thread, between steps: the times add up.
    inline_rate = 1.0 / (1.0 / keras_rate + 1.0 / train_path["images_per_s"])

    date = utc_now()
    header = (
        f"input path: {args.images:,} generated images per epoch, batch {args.batch_size}, "
        f"median of {args.repeats} epochs, {os.cpu_count()} CPU cores "
        f"(load average {os.getloadavg()[0]:.1f}); {date}\n"
        f"model consumes: Keras fit trains {consumer['model']} at {fmt_rate(keras_rate)} img/s "
        f"(batch {consumer['batch_size']}, {consumer['precision']}) - {source}"
    )
    lines = [
        f"| input path | images/s | ms/batch | x Keras train rate | target >= {TARGET:g}x |",
        "|---|---:|---:|---:|---|",
    ]
    for name, result in paths.items():
        x = result["images_per_s"] / keras_rate
        lines.append(
            f"| {name} | {fmt_rate(result['images_per_s'])} | {result['ms_per_batch']:.2f} | "
            f"{x:,.1f}x | {'yes' if x >= TARGET else 'NO'} |"
        )
    lines.append(
        f"| model: Keras fit trains {consumer['model']} | {fmt_rate(keras_rate)} | "
        f"{1000 * args.batch_size / keras_rate:.2f} | 1.0x | |"
    )
    table = "\n".join(lines)
    others = ", ".join(
        f"{name} {fmt_rate(rate)} img/s ({train_path['images_per_s'] / rate:,.1f}x)"
        for name, rate in consumer["rates"].items()
        if name != "keras"
    )
    summary = [
        f"input path (train=True) / Keras consumption = {ratio:,.1f}x "
        f"({'meets' if ratio >= TARGET else 'MISSES'} the {TARGET:g}x target)",
        f"in-line cost in train.py (batches made between steps): ~{fmt_rate(inline_rate)} img/s "
        f"instead of {fmt_rate(keras_rate)} ({100 * (1 - inline_rate / keras_rate):.1f}% slower)",
    ]
    if others:
        summary.append(f"against the other rows of that run: {others}")
    imported = tensorflow_imported()
    if any(imported.values()):
        summary.append(f"imported during the run: {imported} (should not be)")

    print(header)
    print()
    print(table)
    print()
    print("\n".join(summary))

    path = (
        Path(args.json)
        if args.json
        else RESULTS_DIR
        / f"input_pipeline-{slug(consumer['model'] or args.model)}-{consumer['device_slug']}.json"
    )
    report = {
        "benchmark": "input_pipeline",
        "date": date,
        "batch_size": args.batch_size,
        "images": args.images,
        "repeats": args.repeats,
        "host": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0],
        },
        "input": paths,
        "consumption": consumer,
        "ratio": ratio,
        "target": TARGET,
        "meets_target": ratio >= TARGET,
        "inline_images_per_s": inline_rate,
        "imported": imported,
        "header": header,
        "table": table,
    }
    write_report(path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
