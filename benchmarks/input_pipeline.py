"""Speed of the training input path alone, against the rate at which the model consumes images
(a ``benchmarks.throughput`` JSON's Keras row, ``--against``, else a short Keras run here).

``train.py`` makes batches between steps, so the input path should be ``TARGET`` times faster.
"""

from __future__ import annotations

import argparse
import json
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
    median_seconds,
    positive_int,
    publish,
    run_worker,
    slug,
    tensorflow_imported,
    utc_now,
)
from keras_resnet.augment import RandomCropFlip
from keras_resnet.trainer.data import CifarBatches, Split, load_folder

TARGET = 5.0
FOLDER_SIZE = 64  # pixels a side of the --folder JPEGs


def rate(images: int, batches: int, seconds: float) -> dict:
    return {"images": images, "images_per_s": images / seconds,
            "ms_per_batch": 1000 * seconds / batches if batches else None}  # fmt: skip


def time_epochs(split, batch_size: int, train: bool, repeats: int) -> dict:
    """Images/s of ``repeats`` epochs of CifarBatches (median), ``set_epoch`` included."""
    batches = CifarBatches(split, batch_size, train=train, seed=0)
    epochs = iter(range(repeats))

    def epoch():
        batches.set_epoch(next(epochs))
        for index in range(len(batches)):
            batches[index]

    return rate(len(split), len(batches), median_seconds(epoch, repeats, warm_up=False))


def time_augmentation(batch_size: int, repeats: int, batches: int = 200) -> dict:
    """Images/s of RandomCropFlip with cutout 12 alone, jitted on the default JAX device."""
    layer = RandomCropFlip(cutout=12, seed=0)
    images = jax.device_put(generated_batches(batch_size)[0].astype(np.float32))
    layer.build(images.shape)
    step = jax.jit(lambda s, x: layer.stateless_call([], [s], x, training=True))
    state = [layer.step.value]

    def run():
        for _ in range(batches):
            out, state[:] = step(state[0], images)
        jax.block_until_ready(out)

    return rate(batches * batch_size, batches, median_seconds(run, repeats))


def time_folder(images: int, batch_size: int, repeats: int) -> dict[str, dict]:
    """``load_folder`` decoding ``images`` smooth random JPEGs and a test split a tenth the size,
    then epochs of them streamed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        for split, count in (("train", images), ("test", max(10, images // 10))):
            for i in range(count):
                folder = Path(root, split, f"class{i % 10}")
                folder.mkdir(parents=True, exist_ok=True)
                coarse = rng.integers(0, 256, (FOLDER_SIZE // 8 + 1,) * 2 + (3,), dtype=np.uint8)
                picture = Image.fromarray(coarse).resize((FOLDER_SIZE,) * 2, Image.BILINEAR)
                picture.save(folder / f"{i}.jpg", quality=90)
        import tensorflow  # noqa: F401  (it lists the files; its import is no part of the rate)

        started = time.perf_counter()
        held = load_folder(root)
        seconds = time.perf_counter() - started
        files = len(held.train) + len(held.test)
        streamed = load_folder(root, max_memory_gb=1e-9)
        streamed_name = "CifarBatches over FolderImages (streamed)"
        return {"load_folder into memory (list, check sizes, decode all)": rate(files, 0, seconds),
                streamed_name: time_epochs(streamed.train, batch_size, True, repeats)}  # fmt: skip


def consumption(args: argparse.Namespace) -> dict:
    """The throughput report's training rates per row, from --against or a short Keras run."""
    if args.against:
        report = json.loads(Path(args.against).read_text())
        rates = {name: row.get("train_images_per_s") for name, row in report["results"].items()}
        return {"source": args.against, "model": report["model"], "rates": rates,
                "batch_size": report["batch_size"], "precision": report["precision"]}  # fmt: skip
    print(f"measuring Keras training of {args.model} ...", file=sys.stderr, flush=True)
    argv = ["--worker", "keras", "--frameworks", "keras", "--model", args.model,
            "--batch-size", str(args.batch_size), "--precision", args.precision,
            "--steps", str(args.steps), "--warmup", "1", "--eval-steps", "0"]  # fmt: skip
    result = run_worker("throughput", argv)
    if "error" in result:
        sys.exit(f"benchmarks.throughput failed: {result['error']}")
    rates = {"keras": result["rows"]["keras"]["train_images_per_s"]}
    return {"source": f"measured now, {args.steps} steps", "model": args.model, "rates": rates,
            "batch_size": args.batch_size, "precision": args.precision}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="for the Keras measurement")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--images", type=positive_int, default=50_000, help="images per epoch")
    parser.add_argument("--repeats", type=positive_int, default=3, help="epochs timed (median)")
    parser.add_argument("--against", help="a benchmarks.throughput JSON with the model's rates")
    parser.add_argument("--steps", type=positive_int, default=3, help="without --against")
    parser.add_argument("--folder", type=positive_int, metavar="N", help="N JPEGs as a folder")
    parser.add_argument("--json", help="default: benchmarks/results/input_pipeline-<model>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    consumer = consumption(args)
    keras_rate = consumer["rates"]["keras"]
    data, batch, repeats = Split(*generated_batches(args.images)), args.batch_size, args.repeats
    paths = {
        "CifarBatches train=True (shuffle + gather), host": time_epochs(data, batch, True, repeats),
        "CifarBatches train=False (slices only), host": time_epochs(data, batch, False, repeats),
        "RandomCropFlip + cutout 12, jitted on the device": time_augmentation(batch, repeats),
    }
    if args.folder:
        paths.update(time_folder(args.folder, batch, repeats))
    train_rate = next(iter(paths.values()))["images_per_s"]
    ratio = train_rate / keras_rate
    inline_rate = 1.0 / (1.0 / keras_rate + 1.0 / train_rate)  # batches made between steps
    header = (
        f"input path: {args.images:,} generated images per epoch, batch {args.batch_size}, "
        f"median of {args.repeats} epochs; {utc_now()}\nmodel consumes: Keras fit trains "
        f"{consumer['model']} at {fmt_rate(keras_rate)} img/s (batch {consumer['batch_size']}, "
        f"{consumer['precision']}) - {consumer['source']}"
    )
    lines = [
        f"| input path | images/s | ms/batch | x Keras train rate | target >= {TARGET:g}x |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in paths.items():
        x, ms = row["images_per_s"] / keras_rate, row["ms_per_batch"]
        lines.append(
            f"| {name} | {fmt_rate(row['images_per_s'])} | {'-' if ms is None else f'{ms:.2f}'} "
            f"| {x:,.1f}x | {'yes' if x >= TARGET else 'NO'} |"
        )
    notes = [
        f"input path (train=True) / Keras consumption = {ratio:,.1f}x "
        f"({'meets' if ratio >= TARGET else 'MISSES'} the {TARGET:g}x target)",
        f"in-line cost in train.py: ~{fmt_rate(inline_rate)} img/s instead of "
        f"{fmt_rate(keras_rate)} ({1 - inline_rate / keras_rate:.1%} slower)",
    ]
    notes += [f"against {name}: {fmt_rate(rate)} img/s ({train_rate / rate:,.1f}x)"
              for name, rate in consumer["rates"].items() if name != "keras" and rate]  # fmt: skip
    path = Path(args.json or RESULTS_DIR / f"input_pipeline-{slug(consumer['model'])}.json")
    imported = tensorflow_imported() if not args.folder else []
    publish("input_pipeline", path, header, "\n".join(lines), notes, batch_size=args.batch_size,
            images=args.images, repeats=args.repeats, input=paths, consumption=consumer,
            ratio=ratio, inline_images_per_s=inline_rate, imported=imported)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
