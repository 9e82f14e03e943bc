"""How quickly the command line answers, and what XLA's compilation cache saves a rerun.

Each command runs in a fresh process (median of ``--repeats``, interleaved) beside bare Python,
with the heavy modules it imports (from ``python -X importtime``). ``--first-step MODEL ...``
also times ``train.py``'s path to the end of its first step (``--synthetic``, one batch) with
the compilation cache off, cold (an empty folder) and warm (the folder the cold run filled).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, ROOT, positive_int, publish, utc_now

HEAVY = ("jax", "keras", "tensorflow")
MISSING = "no-such-file"
# (label, arguments after the Python executable)
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import jax'": ["-c", "import jax"],
    "--version": ["-m", "keras_resnet", "--version"],
    "--help": ["-m", "keras_resnet", "--help"],
    "train --help": ["-m", "keras_resnet", "train", "--help"],
    "train.py --help": ["train.py", "--help"],
    "list": ["-m", "keras_resnet", "list"],
    "argument error (--model)": ["-m", "keras_resnet", "train", "--model", "resnet9"],
    "predict, missing file": ["-m", "keras_resnet", "predict", f"{MISSING}.keras", "x.png"],
    "import keras_resnet": ["-c", "import keras_resnet"],
    "build('resnet20')": ["-c", "import keras_resnet; keras_resnet.build('resnet20')"],
}
BARE = "python -c pass"
CACHE_SETTINGS = ("off", "cold", "warm")


def _environment(root: Path = ROOT, **updates: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu", **updates}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _run(argv: list[str], root: Path, env: dict[str, str]) -> tuple[float, str, str]:
    """Seconds, stdout and stderr of ``python ARGV`` in ``root``."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], cwd=root, env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    return time.perf_counter() - started, result.stdout, result.stderr


def heavy_imports(argv: list[str], root: Path = ROOT) -> list[str]:
    """Which of ``HEAVY`` the command imports, from ``python -X importtime``'s list."""
    _, _, stderr = _run(["-X", "importtime", *argv], root, _environment(root))
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }
    return [name for name in HEAVY if name in imported]


def measure_commands(commands: dict[str, list[str]], repeats: int, root: Path = ROOT) -> list[dict]:
    """One row per command run in the checkout ``root``: the median wall time, interleaved
    with the others round by round so that a change in the machine's load falls on all of them
    alike."""
    env = _environment(root)
    seconds: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeats):
        for label, argv in commands.items():
            seconds[label].append(_run(argv, root, env)[0])
    return [
        {
            "command": label,
            "median_s": statistics.median(seconds[label]),
            "runs_s": seconds[label],
            "imports": heavy_imports(argv, root),
        }
        for label, argv in commands.items()
    ]


def commands_table(rows: list[dict]) -> str:
    bare = next((row["median_s"] for row in rows if row["command"] == BARE), None)
    lines = [
        f"| command | median s | over bare Python s | {' | '.join(HEAVY)} |",
        "|---|---:|---:|" + "---|" * len(HEAVY),
    ]
    for row in rows:
        over = "-" if bare is None else f"{row['median_s'] - bare:+.2f}"
        marks = " | ".join("yes" if name in row["imports"] else "-" for name in HEAVY)
        lines.append(f"| {row['command']} | {row['median_s']:.2f} | {over} | {marks} |")
    return "\n".join(lines)


# The time to the first training step, in a worker process.
FIRST_STEP = "first step done"


def first_step_worker(model: str, output_dir: str) -> None:
    """Train ``model`` as ``train.py`` does on one synthetic batch; exit when the first step
    has finished (its loss is read back from the device)."""
    import keras  # on JAX: the worker's environment sets KERAS_BACKEND

    from keras_resnet.trainer import fit
    from keras_resnet.trainer.config import TrainConfig

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            print(FIRST_STEP, flush=True)
            os._exit(0)

    config = TrainConfig(
        model=model, synthetic=True, train_size=32, batch_size=32, epochs=1, output_dir=output_dir
    )
    fit.train(config, callbacks=[FirstStep()], verbose=0)


def _first_step_seconds(model: str, cache: str) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        env = _environment(KERAS_RESNET_XLA_CACHE=cache, KERAS_BACKEND="jax")
        argv = ["-m", "benchmarks.startup", "--worker", model, run_dir]
        seconds, stdout, stderr = _run(argv, ROOT, env)
    if FIRST_STEP not in stdout:
        raise RuntimeError(f"the {model} worker failed:\n{stderr[-3000:]}")
    return seconds


def measure_first_steps(models: list[str], repeats: int) -> list[dict]:
    """Per model and cache setting, the median seconds to the first finished step. Each round
    runs off, cold (a new empty folder) and warm (the folder the cold run filled), in turn."""
    seconds = {(model, setting): [] for model in models for setting in CACHE_SETTINGS}
    for _ in range(repeats):
        for model in models:
            with tempfile.TemporaryDirectory() as cache:
                for setting in CACHE_SETTINGS:
                    folder = "0" if setting == "off" else cache
                    seconds[model, setting].append(_first_step_seconds(model, folder))
    return [
        {
            "model": model,
            "cache": setting,
            "median_s": statistics.median(seconds[model, setting]),
            "runs_s": seconds[model, setting],
        }
        for model in models
        for setting in CACHE_SETTINGS
    ]


def first_steps_table(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(f"cache {s} s" for s in CACHE_SETTINGS) + " | warm/off |"]
    lines.append("|---|" + "---:|" * (len(CACHE_SETTINGS) + 1))
    for model in dict.fromkeys(row["model"] for row in rows):
        by_setting = {row["cache"]: row["median_s"] for row in rows if row["model"] == model}
        cells = " | ".join(f"{by_setting[s]:.1f}" for s in CACHE_SETTINGS)
        lines.append(f"| {model} | {cells} | {by_setting['warm'] / by_setting['off']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=5, help="runs per command")
    parser.add_argument("--first-step", nargs="+", metavar="MODEL", default=[])
    parser.add_argument("--first-step-repeats", type=positive_int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "RUN_DIR"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose commands are timed (this one)"
    )
    parser.add_argument("--json", help="default: benchmarks/results/startup.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        first_step_worker(*args.worker)
        return 1  # the worker exits from its callback; reaching here means no step ran
    header = (
        f"start-up of the commands of {args.root}, median of {args.repeats}; {utc_now()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"
    )
    rows = measure_commands(COMMANDS, args.repeats, args.root)
    notes, steps = [], None
    if args.first_step:
        steps = measure_first_steps(args.first_step, args.first_step_repeats)
        notes = [f"start to the end of the first training step (median of "
                 f"{args.first_step_repeats})\n", first_steps_table(steps)]  # fmt: skip
    path = Path(args.json or RESULTS_DIR / "startup.json")
    publish("startup", path, header, commands_table(rows), notes, commands=rows, first_step=steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
