"""What every benchmark shares, free of any framework import: the PyTorch and XLA workers use
it before (or without) importing JAX or Keras."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def slug(text: str) -> str:
    """A file-name-safe form of a model or device name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def rows_chosen(parser: argparse.ArgumentParser, text: str, rows) -> list[str]:
    """``--rows a,b``: the rows named, each one of ``rows``, else the parser's error."""
    chosen = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in rows]
    if unknown or not chosen:
        parser.error(f"--rows: unknown {unknown}; choose from {', '.join(rows)}")
    return chosen


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def max_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def tensorflow_imported() -> dict[str, bool]:
    """Whether TensorFlow or tfds came in: the GPU machine has neither, so none may need them."""
    names = {m.split(".")[0] for m in sys.modules}
    return {name: name in names for name in ("tensorflow", "tensorflow_datasets")}


def generated_batches(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and int32 labels: speed does not depend on the pixels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=n_images).astype(np.int32)
    return images, labels


def train_row(first_step_s: float, seconds: float, steps: int, batch: int, loss) -> dict:
    """The training columns of a hand-timed loop (the JAX and PyTorch rows)."""
    return {
        "first_step_s": first_step_s,
        "train_seconds": seconds,
        "train_images_per_s": steps * batch / seconds,
        "train_step_ms": 1000 * seconds / steps,
        "final_loss": float(loss),
    }


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_bytes(value: int | None, kind: str | None) -> str:
    if value is None:
        return "n/a"
    label = "device peak" if kind == "device" else "max RSS, CPU process"
    return f"{value / 2**30:.2f} GiB ({label})"


def run_module(
    module: str, argv: list[str], env: dict | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> ARGV`` from the repository root, output captured.

    A fresh process per measurement: XLA reads its flags once, and compile caches, memory
    counters and GPU memory pools must not carry over from one row to the next.
    """
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_report(path: Path, report: dict) -> None:
    """Every benchmark's JSON report, in the same form, and the line that says where it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
