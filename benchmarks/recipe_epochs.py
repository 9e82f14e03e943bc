"""Time one epoch of each training recipe as ``train.py`` runs it, and project whole runs.

Run from the repository root (no TensorFlow, no download: the images are generated)::

    python -m benchmarks.recipe_epochs                       # a GPU: whole epochs
    python -m benchmarks.recipe_epochs --steps 3 --warmup 1  # a CPU: 3 timed steps per recipe

For each recipe (all of ``RECIPES`` by default; ``--recipes`` picks) the model is built and
compiled as ``train.py`` does (``keras_resnet.trainer.fit.build_model``: augmentation layer,
optimizer, loss, precision), fed by ``CifarBatches`` over ``--images`` generated images
(50,000: CIFAR-10's training set, less the recipe's validation hold-out) with the trainer's
per-batch callbacks, and evaluated as the trainer's ``Validate`` does (10,000 test images, or
the recipe's validation split; flip test-time augmentation where the recipe uses it;
``--eval-images`` runs fewer and scales the time).

Reported per recipe: the first step (trace and compile), steady training images/s, the training
time of one epoch (measured over ``--steps`` steps, or the whole epoch without it, and scaled to
the epoch's step count), the evaluation time, and the recipe's whole run projected as epochs x
(training + evaluation) time. For ``fast`` that projection is the time to ~94% test accuracy
that the published recipe reaches in its 26 epochs: projected, not measured, since these
images are generated.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import keras

from benchmarks import keras_timing
from benchmarks.common import (
    RESULTS_DIR,
    fmt_rate,
    generated_batches,
    positive_int,
    slug,
    tensorflow_imported,
    utc_now,
    write_report,
)
from keras_resnet.callbacks import StopOnNaN, StopOnSignal
from keras_resnet.trainer.callbacks import SetEpoch
from keras_resnet.trainer.config import RECIPES, TrainConfig
from keras_resnet.trainer.data import CifarBatches, Split
from keras_resnet.trainer.evaluation import predict_logits
from keras_resnet.trainer.fit import build_model

TEST_IMAGES = 10_000


def time_recipe(name: str, args: argparse.Namespace) -> dict:
    """One recipe: its compile, steady steps, one epoch's training and evaluation times."""
    config = TrainConfig(recipe=name, **({"model": args.model} if args.model else {}))
    keras.utils.clear_session(free_memory=True)
    keras.mixed_precision.set_global_policy(config.precision)
    images, labels = generated_batches(args.images, seed=0)
    held_out = config.val_size
    if held_out >= len(images):
        raise ValueError(
            f"--images {args.images} leaves no training images beside the {name} recipe's "
            f"{held_out} validation images"
        )
    train_split = Split(images[: len(images) - held_out], labels[: len(labels) - held_out])
    # What the trainer evaluates each epoch; --eval-images runs fewer and scales the time.
    eval_name, eval_images = ("validation", held_out) if held_out else ("test", TEST_IMAGES)
    measured = min(args.eval_images or eval_images, eval_images)
    eval_split = Split(*generated_batches(measured, seed=1))

    batches = CifarBatches(train_split, config.batch_size, train=True, seed=config.seed)
    steps_per_epoch = len(batches)
    timed = min(args.steps or steps_per_epoch, steps_per_epoch)
    model = build_model(config, steps_per_epoch)

    def fit(steps: int) -> keras_timing.StepClock:
        """``steps`` batches as train.py runs them; the wall-clock time of each step."""
        clock = keras_timing.StepClock()
        model.fit(
            batches,
            epochs=1,
            steps_per_epoch=steps,
            shuffle=False,
            verbose=0,
            callbacks=[SetEpoch(batches), StopOnNaN(), StopOnSignal(), clock],
        )
        return clock

    warm = fit(min(args.warmup, steps_per_epoch))  # trace, compile and settle
    timed_clock = fit(timed)
    seconds = timed_clock.end[timed - 1] - timed_clock.begin[0]
    train_epoch_s = seconds * steps_per_epoch / timed

    predict_logits(model, eval_split, flip_tta=config.flip_tta)  # compiles
    started = time.perf_counter()
    predict_logits(model, eval_split, flip_tta=config.flip_tta)
    eval_s = (time.perf_counter() - started) * eval_images / measured

    epoch_s = train_epoch_s + eval_s
    return {
        "recipe": name,
        "model": config.model,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "flip_tta": config.flip_tta,
        "epochs": config.epochs,
        "steps_per_epoch": steps_per_epoch,
        "timed_steps": timed,
        "whole_epoch_timed": timed == steps_per_epoch,
        "first_step_s": warm.end[0] - warm.begin[0],
        "train_images_per_s": timed * config.batch_size / seconds,
        "train_epoch_s": train_epoch_s,
        "eval_split": eval_name,
        "eval_images": eval_images,
        "eval_images_measured": measured,
        "eval_s": eval_s,
        "epoch_s": epoch_s,
        "projected_run_s": config.epochs * epoch_s,
    }


def fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| recipe | model, batch, precision | compile s | train img/s | train epoch | "
        "eval | epochs | projected run |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['recipe']} | failed: {row['error'][:80]} | | | | | | |")
            continue
        scaled = "" if row["whole_epoch_timed"] else f" (from {row['timed_steps']} steps)"
        tta = ", flip TTA" if row["flip_tta"] else ""
        if row["eval_images_measured"] < row["eval_images"]:
            tta += f", from {row['eval_images_measured']:,}"
        lines.append(
            f"| {row['recipe']} | {row['model']}, {row['batch_size']}, {row['precision']} | "
            f"{row['first_step_s']:.1f} | {fmt_rate(row['train_images_per_s'])} | "
            f"{fmt_seconds(row['train_epoch_s'])}{scaled} | "
            f"{fmt_seconds(row['eval_s'])} ({row['eval_images']:,} {row['eval_split']}{tta}) | "
            f"{row['epochs']} | {fmt_seconds(row['projected_run_s'])} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated")
    parser.add_argument("--model", help="override every recipe's model (e.g. a small test)")
    parser.add_argument("--images", type=positive_int, default=50_000, help="training images")
    parser.add_argument(
        "--eval-images",
        type=positive_int,
        help="evaluate only this many, scaling the time to the recipe's evaluation split",
    )
    parser.add_argument(
        "--steps", type=positive_int, help="timed steps per recipe (default: the whole epoch)"
    )
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps first")
    parser.add_argument("--json", help="default: benchmarks/results/recipe_epochs-<device>.json")
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown or not args.recipes:
        parser.error(f"--recipes: unknown {unknown}; choose from {', '.join(RECIPES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    rows = []
    for name in args.recipes:
        print(f"[{name}] timing ...", file=sys.stderr, flush=True)
        try:
            rows.append(time_recipe(name, args))
        except Exception as error:  # one recipe failing must not lose the others' figures
            rows.append({"recipe": name, "error": f"{type(error).__name__}: {error}"})
    device = keras_timing.device_info()
    date = utc_now()
    header = (
        f"one epoch per recipe on {args.images:,} generated images; JAX {device['platform']} "
        f"({device['device_kind']}) x{device['count']}; {os.cpu_count()} CPU cores; {date}"
    )
    table = markdown_table(rows)
    print(header)
    print()
    print(table)
    fast = next((r for r in rows if r["recipe"] == "fast" and "error" not in r), None)
    if fast and fast["model"] == RECIPES["fast"]["model"]:
        print(
            f"\nfast: projected time to ~94% test accuracy (the published recipe's "
            f"{fast['epochs']} epochs x {fmt_seconds(fast['epoch_s'])}) = "
            f"{fmt_seconds(fast['projected_run_s'])}; projected from generated data, "
            "not measured on CIFAR-10"
        )
    device_slug = "cpu" if device["platform"] == "cpu" else slug(device["device_kind"])
    path = Path(args.json) if args.json else RESULTS_DIR / f"recipe_epochs-{device_slug}.json"
    report = {
        "benchmark": "recipe_epochs",
        "date": date,
        "device": device,
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "images": args.images,
        "rows": rows,
        "imported": tensorflow_imported(),
        "header": header,
        "table": table,
    }
    write_report(path, report)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
