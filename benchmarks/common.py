"""What every benchmark shares, free of framework imports: the PyTorch workers use it without
JAX or Keras."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
NUM_CLASSES = 10
RESULT = "RESULT "  # a worker's last line: this, then its result as JSON


def slug(text: str) -> str:
    """A file-name-safe form of a model or device name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def positive_int(text: str, minimum: int = 1) -> int:
    if int(text) < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {text}")
    return int(text)


def non_negative_int(text: str) -> int:
    return positive_int(text, minimum=0)


def rows_chosen(parser: argparse.ArgumentParser, text: str, rows, flag: str = "--rows") -> list:
    """``--rows a,b``: the rows named, in ``rows``'s order, else the parser's error."""
    chosen = {r.strip() for r in text.split(",") if r.strip()}
    unknown = sorted(chosen - set(rows))
    if unknown or not chosen:
        parser.error(f"{flag}: unknown {unknown}; choose from {', '.join(rows)}")
    return [r for r in rows if r in chosen]


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def median_seconds(run, repeats: int, warm_up: bool = True) -> float:
    """The median wall time of ``repeats`` calls of ``run``, after an untimed one (compiles,
    warms caches) unless ``warm_up`` is False."""
    if warm_up:
        run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def max_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def tensorflow_imported() -> list[str]:
    """Which of TensorFlow and tfds came in: the GPU machine has neither, so none may need them."""
    names = {m.split(".")[0] for m in sys.modules}
    return [name for name in ("tensorflow", "tensorflow_datasets") if name in names]


def generated_batches(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and int32 labels: speed does not depend on the pixels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, NUM_CLASSES, size=n_images).astype(np.int32)


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run_worker(module: str, argv: list[str], env: dict | None = None) -> dict:
    """``python -m benchmarks.<module> ARGV`` in a fresh process, as XLA reads its flags once
    and compile caches and memory counters must not carry over: the dict of its last
    ``RESULT`` line, else ``{"error": ...}`` with the end of its output."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *argv], cwd=ROOT,
                          env=env, capture_output=True, text=True)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if not lines:
        return {"error": f"exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}"}
    return json.loads(lines[-1][len(RESULT) :])


def send_result(result: dict) -> None:
    """A worker's answer to ``run_worker``."""
    print(RESULT + json.dumps(result, default=str), flush=True)


def jax_device() -> dict:
    import jax

    device = jax.devices()[0]
    return {"platform": device.platform, "device_kind": device.device_kind,
            "count": jax.device_count()}  # fmt: skip


def device_slug(device: dict) -> str:
    return "cpu" if device.get("platform") == "cpu" else slug(device.get("device_kind", ""))


def publish(benchmark: str, path: Path, header: str, table: str, notes=(), **fields) -> None:
    """Prints the header, the table and any notes; writes them, the host and ``fields`` as the
    benchmark's JSON report at ``path``."""
    print(f"{header}\n\n{table}" + "".join(f"\n{line}" for line in ["", *notes] if notes))
    host = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
    report = {"benchmark": benchmark, "date": utc_now(), "host": host, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "header": header, "table": table}, indent=2) + "\n")
    print(f"\nwrote {path}")
