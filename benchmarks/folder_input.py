"""Input rate of ``--dataset folder:PATH``: a folder of JPEGs, held in memory or streamed.

Run from the repository root (it writes its own folder of generated JPEGs; TensorFlow lists
the files, as in training)::

    python -m benchmarks.folder_input
    python -m benchmarks.folder_input --images 4096 --size 64

Rows, each over ``--images`` training images at ``--batch-size``:

- ``load_folder`` into memory: listing, the size check of every header, and decoding every
  file once (the start-up cost of a folder under ``--max-memory-gb``; TensorFlow's import is
  left out);
- ``CifarBatches`` over the decoded arrays: an epoch's batches once the folder is in memory;
- ``CifarBatches`` over ``FolderImages``: an epoch's batches of a streamed folder (over the
  budget), each batch decoded from its files on ``DECODE_THREADS`` threads as it is asked for.

Compare the streamed rate with the model's training rate (``benchmarks.throughput``): in
``train.py`` batches are made between steps, so a streamed folder slows training unless it
decodes several times faster than the model trains.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import numpy as np
from PIL import Image

from benchmarks.common import RESULTS_DIR, fmt_rate, positive_int, utc_now, write_report
from keras_resnet.trainer.data import DECODE_THREADS, CifarBatches, load_folder

CLASSES = 10


def write_jpegs(root: Path, images: int, size: int, quality: int, seed: int = 0) -> int:
    """``root/train/<class>/*.jpg`` (``images`` of them) and a test split a tenth the size,
    smooth random pictures so the JPEGs are photo-sized rather than noise-sized; their bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for split, count in (("train", images), ("test", max(CLASSES, images // 10))):
        for i in range(count):
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
            picture = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
            path = folder / f"{i}.jpg"
            picture.save(path, quality=quality)
            total += path.stat().st_size
    return total


def time_epochs(split, batch_size: int, repeats: int) -> dict:
    """Images/s of ``repeats`` shuffled epochs of CifarBatches (median), set_epoch included."""
    batches = CifarBatches(split, batch_size, train=True, seed=0)
    seconds = []
    for epoch in range(repeats):
        started = time.perf_counter()
        batches.set_epoch(epoch)
        for index in range(len(batches)):
            batches[index]
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {
        "images": len(split),
        "seconds": median,
        "images_per_s": len(split) / median,
        "ms_per_batch": 1000 * median / len(batches),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=positive_int, default=2048, help="training JPEGs")
    parser.add_argument("--size", type=positive_int, default=64, help="pixels a side")
    parser.add_argument("--quality", type=positive_int, default=90, help="JPEG quality")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--repeats", type=positive_int, default=3, help="epochs timed (median)")
    parser.add_argument("--json", help="default: benchmarks/results/folder_input-<size>.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "jpegs"
        nbytes = write_jpegs(root, args.images, args.size, args.quality)
        import tensorflow  # noqa: F401  (its import, seconds, is no part of the rate)

        started = time.perf_counter()
        held = load_folder(str(root))
        load_seconds = time.perf_counter() - started
        streamed = load_folder(str(root), max_memory_gb=1e-9)
        in_memory = time_epochs(held.train, args.batch_size, args.repeats)
        streaming = time_epochs(streamed.train, args.batch_size, args.repeats)
    files = len(held.train) + len(held.test)
    rows = {
        "load_folder into memory (list, check sizes, decode all)": {
            "images": files,
            "seconds": load_seconds,
            "images_per_s": files / load_seconds,
            "ms_per_batch": None,
        },
        "CifarBatches train=True over the decoded arrays": in_memory,
        f"CifarBatches train=True over FolderImages (streamed, {DECODE_THREADS} threads)": (
            streaming
        ),
    }

    date = utc_now()
    header = (
        f"folder input: {args.images:,} training JPEGs of {args.size}x{args.size} "
        f"(quality {args.quality}, {nbytes / files / 1024:.1f} KiB each), batch "
        f"{args.batch_size}, median of {args.repeats} epochs, {os.cpu_count()} CPU cores "
        f"(load average {os.getloadavg()[0]:.1f}); {date}"
    )
    lines = ["| input path | images/s | ms/batch |", "|---|---:|---:|"]
    for name, row in rows.items():
        ms = "-" if row["ms_per_batch"] is None else f"{row['ms_per_batch']:.2f}"
        lines.append(f"| {name} | {fmt_rate(row['images_per_s'])} | {ms} |")
    table = "\n".join(lines)
    print(header)
    print()
    print(table)

    path = Path(args.json) if args.json else RESULTS_DIR / f"folder_input-{args.size}.json"
    report = {
        "benchmark": "folder_input",
        "date": date,
        "images": args.images,
        "size": args.size,
        "quality": args.quality,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "jpeg_bytes": nbytes,
        "host": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0],
        },
        "input": rows,
        "header": header,
        "table": table,
    }
    write_report(path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
