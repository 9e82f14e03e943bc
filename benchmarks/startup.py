"""How quickly the command line answers, and what XLA's compilation cache saves a rerun.

Each command runs in a fresh process beside bare Python (median of ``--repeats``, interleaved),
with the heavy modules ``python -X importtime`` lists. ``--first-step MODEL ...`` also times
``train.py``'s path to the end of its first step with the compilation cache off, cold (an empty
folder) and warm (the folder the cold run filled).
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
MODULE = ["-m", "keras_resnet"]
COMMANDS: dict[str, list[str]] = {  # label: the arguments after the Python executable
    "python -c pass": ["-c", "pass"],
    "python -c 'import jax'": ["-c", "import jax"],
    "--version": [*MODULE, "--version"],
    "--help": [*MODULE, "--help"],
    "train --help": [*MODULE, "train", "--help"],
    "train.py --help": ["train.py", "--help"],
    "list": [*MODULE, "list"],
    "argument error (--model)": [*MODULE, "train", "--model", "resnet9"],
    "predict, missing file": [*MODULE, "predict", "no-such-file.keras", "x.png"],
    "import keras_resnet": ["-c", "import keras_resnet"],
    "build('resnet20')": ["-c", "import keras_resnet; keras_resnet.build('resnet20')"],
}
BARE = "python -c pass"
CACHE_SETTINGS = ("off", "cold", "warm")
FIRST_STEP = "first step done"


def run(argv: list[str], **env: str) -> tuple[float, str, str]:
    """Seconds, stdout and stderr of ``python ARGV`` in this checkout, JAX on the CPU."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", **os.environ, "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu", **env}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    return time.perf_counter() - started, done.stdout, done.stderr


def heavy_imports(argv: list[str]) -> list[str]:
    stderr = run(["-X", "importtime", *argv])[2]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in stderr.splitlines() if line.startswith("import time:")}  # fmt: skip
    return [name for name in HEAVY if name in imported]


def measure_commands(commands: dict[str, list[str]], repeats: int) -> list[dict]:
    """Round by round, so that a change in the machine's load falls on every command alike."""
    seconds: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeats):
        for label, argv in commands.items():
            seconds[label].append(run(argv)[0])
    return [{"command": label, "median_s": statistics.median(seconds[label]),
             "runs_s": seconds[label], "imports": heavy_imports(argv)}
            for label, argv in commands.items()]  # fmt: skip


def commands_table(rows: list[dict]) -> str:
    bare = next(row["median_s"] for row in rows if row["command"] == BARE)
    lines = [f"| command | median s | over bare Python s | {' | '.join(HEAVY)} |",
             "|---|---:|---:|" + "---|" * len(HEAVY)]  # fmt: skip
    for row in rows:
        marks = " | ".join("yes" if name in row["imports"] else "-" for name in HEAVY)
        lines.append(f"| {row['command']} | {row['median_s']:.2f} | "
                     f"{row['median_s'] - bare:+.2f} | {marks} |")  # fmt: skip
    return "\n".join(lines)


def first_step_worker(model: str, output_dir: str) -> None:
    """``train.py``'s run of ``model`` on one synthetic batch, ended once its loss is read."""
    import keras  # on JAX: the worker's environment sets KERAS_BACKEND

    from keras_resnet.trainer import fit
    from keras_resnet.trainer.config import TrainConfig

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            print(FIRST_STEP, flush=True)
            os._exit(0)

    config = TrainConfig(model=model, synthetic=True, train_size=32, batch_size=32, epochs=1,
                         output_dir=output_dir)  # fmt: skip
    fit.train(config, callbacks=[FirstStep()], verbose=0)


def first_step_seconds(model: str, cache: str) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        argv = ["-m", "benchmarks.startup", "--worker", model, run_dir]
        seconds, stdout, stderr = run(argv, KERAS_RESNET_XLA_CACHE=cache, KERAS_BACKEND="jax")
    if FIRST_STEP not in stdout:
        raise RuntimeError(f"the {model} worker failed:\n{stderr[-3000:]}")
    return seconds


def measure_first_steps(models: list[str], repeats: int) -> list[dict]:
    """Each round runs off, cold (a new empty folder) and warm (the folder cold filled)."""
    seconds = {(model, setting): [] for model in models for setting in CACHE_SETTINGS}
    for _ in range(repeats):
        for model in models:
            with tempfile.TemporaryDirectory() as cache:
                for setting in CACHE_SETTINGS:
                    folder = "0" if setting == "off" else cache
                    seconds[model, setting].append(first_step_seconds(model, folder))
    return [{"model": model, "cache": setting, "median_s": statistics.median(runs),
             "runs_s": runs} for (model, setting), runs in seconds.items()]  # fmt: skip


def first_steps_table(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(f"cache {s} s" for s in CACHE_SETTINGS) + " | warm/off |",
             "|---|" + "---:|" * (len(CACHE_SETTINGS) + 1)]  # fmt: skip
    for model in dict.fromkeys(row["model"] for row in rows):
        by_setting = {row["cache"]: row["median_s"] for row in rows if row["model"] == model}
        cells = " | ".join(f"{by_setting[s]:.1f}" for s in CACHE_SETTINGS)
        lines.append(f"| {model} | {cells} | {by_setting['warm'] / by_setting['off']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=5, help="runs per command")
    parser.add_argument("--first-step", nargs="+", metavar="MODEL", default=[])
    parser.add_argument("--first-step-repeats", type=positive_int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "RUN_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="default: benchmarks/results/startup.json")
    args = parser.parse_args(argv)
    if args.worker:
        first_step_worker(*args.worker)
        return 1  # the worker exits from its callback; reaching here means no step ran
    header = (f"start-up of the commands, median of {args.repeats}; {utc_now()}, {os.cpu_count()}"
              f" CPUs, load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    rows = measure_commands(COMMANDS, args.repeats)
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
