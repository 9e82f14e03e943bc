"""How quickly the command line answers (each command in a fresh process beside bare Python,
with the heavy modules ``python -X importtime`` lists) and, with ``--first-step MODEL ...``,
``train.py``'s path to the end of its first step with the compilation cache off, cold (an empty
folder) and warm (the folder the cold run filled): medians of rounds of every run."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common

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
# train.py's run of argv[1] on one synthetic batch, in argv[2], ended once its loss is read
FIRST_STEP = """
import os, sys, keras
from keras_resnet.trainer import config, fit

class FirstStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        os._exit(0)

fit.train(config.TrainConfig(model=sys.argv[1], synthetic=True, train_size=32, batch_size=32,
          epochs=1, output_dir=sys.argv[2]), callbacks=[FirstStep()], verbose=0)
sys.exit("no step ran")
"""


def run(argv: list[str], **env: str) -> tuple[float, subprocess.CompletedProcess]:
    """``python ARGV`` in this checkout, JAX on the CPU: its seconds, and how it ended."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", **os.environ, "PYTHONPATH": str(common.ROOT),
           "JAX_PLATFORMS": "cpu", **env}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=common.ROOT, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    return time.perf_counter() - started, done


def measure_commands(commands: dict[str, list[str]], repeats: int) -> list[dict]:
    """Round by round, so that a busy spell falls on every command alike; then their imports."""
    seconds: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(repeats):
        for label, argv in commands.items():
            seconds[label].append(run(argv)[0])
    rows = []
    for label, argv in commands.items():
        lines = run(["-X", "importtime", *argv])[1].stderr.splitlines()
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                    for line in lines if line.startswith("import time:")}  # fmt: skip
        heavy, median = [m for m in HEAVY if m in imported], statistics.median(seconds[label])
        rows.append({"command": label, "median_s": median, "runs_s": seconds[label],
                     "imports": heavy})  # fmt: skip
    return rows


def commands_table(rows: list[dict]) -> str:
    bare = next(row["median_s"] for row in rows if row["command"] == BARE)
    cells = [[row["command"], f"{row['median_s']:.2f}", f"{row['median_s'] - bare:+.2f}",
              *("yes" if name in row["imports"] else "-" for name in HEAVY)]
             for row in rows]  # fmt: skip
    return common.markdown(["command", "median s", "over bare Python s", *HEAVY], "lrrlll", cells)


def measure_first_steps(models: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Each round runs off, cold (a new empty folder) and warm (the folder cold filled): the
    median seconds by model and setting."""
    seconds = {model: {setting: [] for setting in CACHE_SETTINGS} for model in models}
    for _ in range(repeats):
        for model in models:
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as runs:
                for setting, found in seconds[model].items():
                    argv = ["-c", FIRST_STEP, model, f"{runs}/{setting}"]
                    env = {"KERAS_RESNET_XLA_CACHE": "0" if setting == "off" else cache}
                    took, done = run(argv, KERAS_BACKEND="jax", **env)
                    if done.returncode:
                        raise RuntimeError(f"{model}'s first step failed:\n{done.stderr[-3000:]}")
                    found.append(took)
    return {model: {s: statistics.median(runs) for s, runs in by_setting.items()}
            for model, by_setting in seconds.items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=common.positive_int, default=5, help="runs per command")
    parser.add_argument("--first-step", nargs="+", metavar="MODEL", default=[])
    parser.add_argument("--first-step-repeats", type=common.positive_int, default=3)
    parser.add_argument("--json", help="default: benchmarks/results/startup.json")
    args = parser.parse_args(argv)
    rows = measure_commands(COMMANDS, args.repeats)
    steps = measure_first_steps(args.first_step, args.first_step_repeats)
    cells = [[model, *(f"{s:.1f}" for s in by.values()), f"{by['warm'] / by['off']:.2f}"]
             for model, by in steps.items()]  # fmt: skip
    columns = ["model", *(f"cache {setting} s" for setting in CACHE_SETTINGS), "warm/off"]
    table = "start to the first training step's end:\n\n" + common.markdown(columns, "lrrrr", cells)
    settings = {"repeats": args.repeats, "first_step_repeats": args.first_step_repeats}
    common.publish("startup", args.json, settings, commands_table(rows), [table] if steps else [],
                   commands=rows, first_step=steps)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
