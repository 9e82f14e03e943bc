"""Training and evaluation throughput: Keras ``model.fit`` vs a pure-JAX step vs PyTorch.

Run from the repository root (CPU or GPU; TensorFlow and tensorflow-datasets are never needed,
the data is generated)::

    python -m benchmarks.throughput --model resnet18 --batch-size 128 --steps 20
    python -m benchmarks.throughput --model resnet20 --steps 10 --warmup 2   # quick, on a CPU

Each framework runs in its own Python process, one after the other, so that compile caches,
peak-memory counters and GPU memory pools (JAX reserves most of the GPU when it starts) never
mix; each row's worker is its own module (``throughput_keras``, ``_jax``, ``_torch``) and
``throughput_report`` makes the table. The rows:

- ``keras``: the model exactly as ``train.py`` builds and compiles it
  (``keras_resnet.trainer.fit.build_model``: crop and flip (``RandomCropFlip``) and
  ``input_normalization`` inside the model, ``TorchSGD`` with PyTorch-style L2, cross-entropy on
  logits, accuracy), trained with ``model.fit`` on uint8 arrays. Callbacks are asynchronous, so
  nothing waits for the device between steps.
- ``keras-trainer``: the same compiled model fed the way ``train.py`` feeds it: ``CifarBatches``
  (per-epoch shuffle, a gather of uint8 images in the main thread) with the trainer's per-batch
  callbacks (``SetEpoch``, ``StopOnNaN``, ``StopOnSignal``). They are ``async_safe``, so they
  read each step's loss on Keras's thread pool while the next step runs. The progress bar is
  left off.
- ``jax``: the same Keras network (augmentation included) through ``model.stateless_call`` in
  a hand-written ``jax.jit`` step (``jax.value_and_grad``; the same SGD-momentum update with L2
  in jax.numpy; donated buffers). Its rate is the backend's limit: ``keras / jax`` is what
  ``fit`` costs.
- ``torch``: the same network in PyTorch (``benchmarks.torch_resnet``), channels_last,
  ``torch.optim.SGD`` with the notes' lr, momentum and weight decay (``TrainConfig``'s), crop,
  flip and normalisation on the device; ``--precision mixed_bfloat16`` uses
  ``torch.autocast(bfloat16)``.

Every row trains on the same generated uint8 batches (copied to the device each step) and
reports: the first step (trace + compile + one step; cuDNN autotuning for PyTorch), steady-state
training images/s over ``--steps`` timed steps after ``--warmup`` untimed ones (the clock stops
only when the device has finished), evaluation images/s at ``--eval-batch-size`` (logits, loss
and accuracy, ``model.evaluate`` for Keras), and peak memory: the device's peak bytes on a GPU,
else the worker process's maximum resident set size (labelled "max RSS, CPU").

On a shared or busy host, ``--rounds 3`` runs the workers three times, interleaved, and reports
each row from its median round. Every run writes the full results to ``--json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import throughput_report as report
from benchmarks.common import (
    RESULTS_DIR,
    max_rss_bytes,
    non_negative_int,
    positive_int,
    round_up,
    run_module,
    slug,
    tensorflow_imported,
    utc_now,
)

FRAMEWORKS = ("keras", "keras-trainer", "jax", "torch")
# The worker process (and module benchmarks.throughput_<worker>) that measures each row.
WORKERS = {"keras": "keras", "keras-trainer": "keras", "jax": "jax", "torch": "torch"}
MODEL_SOURCE = "keras_resnet.trainer.fit.build_model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet18", help="any registered name")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed training steps")
    parser.add_argument(
        "--warmup", type=positive_int, default=3, help="untimed steps, the compiling one included"
    )
    parser.add_argument("--eval-batch-size", type=positive_int, default=512)
    parser.add_argument(
        "--eval-steps",
        type=non_negative_int,
        default=None,
        help="timed evaluation batches (default: --steps; 0 skips evaluation)",
    )
    parser.add_argument(
        "--steps-per-execution",
        type=positive_int,
        default=None,
        help="Keras rows: override the trainer's steps_per_execution",
    )
    parser.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all available)",
    )
    parser.add_argument("--torch-compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--torch-memory-format", choices=("channels_last", "contiguous"), default="channels_last"
    )
    parser.add_argument(
        "--json", default=None, help="default: benchmarks/results/throughput-<model>-<device>.json"
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="repeat every worker this often, interleaved; rows are the median round's",
    )
    parser.add_argument("--timeout", type=positive_int, default=3600, help="seconds per worker")
    parser.add_argument("--worker", choices=("keras", "jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown or not frameworks:
        parser.error(f"--frameworks: unknown {unknown}; choose from {', '.join(FRAMEWORKS)}")
    args.frameworks = [f for f in FRAMEWORKS if f in frameworks]
    if args.steps_per_execution:  # whole executions only, the same steps for every row
        args.steps = round_up(args.steps, args.steps_per_execution)
        args.warmup = round_up(args.warmup, args.steps_per_execution)
    if args.eval_steps is None:
        args.eval_steps = args.steps
    return args


def worker_main(args: argparse.Namespace) -> None:
    """In a worker process: measure this worker's rows and leave them in ``--result-file``."""
    rows = [f for f in args.frameworks if WORKERS[f] == args.worker]
    try:
        worker = importlib.import_module(f"benchmarks.throughput_{args.worker}")
        result = worker.run(args, rows)
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    result["imported"] = tensorflow_imported()
    result["max_rss_bytes"] = max_rss_bytes()
    Path(args.result_file).write_text(json.dumps(result, indent=2, default=str))


def _worker_argv(args: argparse.Namespace, worker: str, result_file: str) -> list[str]:
    argv = [
        "--model", args.model, "--batch-size", str(args.batch_size),
        "--precision", args.precision, "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--eval-batch-size", str(args.eval_batch_size), "--eval-steps", str(args.eval_steps),
        "--frameworks", ",".join(args.frameworks),
        "--torch-memory-format", args.torch_memory_format,
        "--worker", worker, "--result-file", result_file,
    ]  # fmt: skip
    if args.steps_per_execution is not None:
        argv += ["--steps-per-execution", str(args.steps_per_execution)]
    if args.torch_compile:
        argv.append("--torch-compile")
    return argv


def run_worker(args: argparse.Namespace, worker: str) -> dict:
    """One worker in a fresh process; its result, or ``{"error": ...}``."""
    env = dict(os.environ)
    if worker == "torch":
        env.setdefault("JAX_PLATFORMS", "cpu")  # it imports keras_resnet only for the spec
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "result.json")
        started = time.perf_counter()
        print(f"[{worker}] running ...", file=sys.stderr, flush=True)
        try:
            proc = run_module(
                "throughput", _worker_argv(args, worker, result_file), env, args.timeout
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {args.timeout} s"}
        elapsed = time.perf_counter() - started
        print(f"[{worker}] done in {elapsed:.0f} s", file=sys.stderr, flush=True)
        if not os.path.exists(result_file):
            tail = (proc.stdout + proc.stderr)[-3000:]
            return {"error": f"worker exited with {proc.returncode}:\n{tail}"}
        result = json.loads(Path(result_file).read_text())
    if "error" in result:
        print(f"[{worker}] failed: {result.get('traceback', result['error'])}", file=sys.stderr)
    result["worker_seconds"] = elapsed
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    notes = []
    if "torch" in args.frameworks and importlib.util.find_spec("torch") is None:
        args.frameworks.remove("torch")
        notes.append("torch skipped: PyTorch is not importable here")
    load_start = os.getloadavg()[0]
    rounds = []  # every worker once per round, interleaved, so a busy spell hits all alike
    for number in range(args.rounds):
        if args.rounds > 1:
            print(f"round {number + 1} of {args.rounds}", file=sys.stderr, flush=True)
        workers_needed = dict.fromkeys(WORKERS[f] for f in args.frameworks)
        rounds.append({w: run_worker(args, w) for w in workers_needed})
    rows = {}
    for framework in args.frameworks:
        found = []
        for results in rounds:
            result = results[WORKERS[framework]]
            if "error" in result:
                found.append({"error": result["error"]})
            else:
                found.append(result["rows"].get(framework, {"error": "no result"}))
        rows[framework] = report.median_round(found, args.rounds)
    load_end = os.getloadavg()[0]
    if max(load_start, load_end) > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"warning: the host was busy (1-minute load average {load_start:.1f} before, "
            f"{load_end:.1f} after, on {os.cpu_count()} cores): CPU-bound rates are noisy"
        )

    workers = rounds[0]
    device_text, device_slug = report.describe_device(workers)
    versions = {"python": platform.python_version()}
    for result in workers.values():
        versions.update(result.get("versions", {}))
    date = utc_now()
    header = report.header(args, workers, device_text, (load_start, load_end), versions, date)
    table = report.markdown_table(rows)
    ratio = report.ratios(rows)
    source = workers.get("keras", {}).get("model_source", MODEL_SOURCE)
    if source != MODEL_SOURCE:
        notes.append(f"warning: the Keras rows used {source}")
    imported = {
        name: {
            module: any(r[name].get("imported", {}).get(module) for r in rounds)
            for module in result.get("imported", {})
        }
        for name, result in workers.items()
    }
    pulled = sorted({m for found in imported.values() for m, hit in found.items() if hit})
    if pulled:
        notes.append(f"imported during the run: {', '.join(pulled)} (should not be)")
    print(header)
    print()
    print(table)
    print()
    for line in report.ratio_lines(ratio) + notes:
        print(line)

    path = Path(args.json or RESULTS_DIR / f"throughput-{slug(args.model)}-{device_slug}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "throughput",
        "date": date,
        "model": args.model,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "steps": args.steps,
        "warmup": args.warmup,
        "eval_batch_size": args.eval_batch_size,
        "eval_steps": args.eval_steps,
        "rounds": args.rounds,
        "steps_per_execution": workers.get("keras", {}).get("steps_per_execution"),
        "device": device_text,
        "device_slug": device_slug,
        "host": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min": [load_start, load_end],
        },
        "versions": versions,
        "results": rows,
        "ratios": ratio,
        "imported": imported,
        "workers": {
            name: {k: v for k, v in result.items() if k not in ("rows", "versions")}
            for name, result in workers.items()
        },
        "notes": notes,
        "header": header,
        "table": table,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 1 if any("error" in row for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
