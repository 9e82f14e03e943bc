"""The ``keras`` and ``keras-trainer`` rows of ``benchmarks.throughput``: ``model.fit`` on the
model exactly as ``train.py`` builds and compiles it."""

from __future__ import annotations

import argparse
import math
import time

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import keras

from benchmarks import keras_timing
from benchmarks.common import generated_batches, round_up
from keras_resnet.callbacks import StopOnNaN, StopOnSignal
from keras_resnet.trainer.callbacks import SetEpoch
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.data import CifarBatches, Split
from keras_resnet.trainer.fit import build_model

MODEL_SOURCE = "keras_resnet.trainer.fit.build_model"


def trainer_model(args: argparse.Namespace) -> keras.Model:
    """The compiled model of a ``train.py --model M --batch-size B --precision P`` run."""
    # Not keras.utils.set_random_seed: it imports TensorFlow whenever that is installed.
    keras.mixed_precision.set_global_policy(args.precision)
    config = TrainConfig(model=args.model, batch_size=args.batch_size, precision=args.precision)
    model = build_model(config, steps_per_epoch=1)
    if args.steps_per_execution is not None:
        model.steps_per_execution = args.steps_per_execution
    return model


def trainable_count(model: keras.Model) -> int:
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def run(args: argparse.Namespace, rows: list[str]) -> dict:
    """``keras`` (fit on arrays) and ``keras-trainer`` (fit on CifarBatches) rows."""
    model = trainer_model(args)
    spe = int(getattr(model, "steps_per_execution", 1) or 1)
    warmup, steps = round_up(args.warmup, spe), round_up(args.steps, spe)
    images, labels = generated_batches((warmup + steps) * args.batch_size)
    results = {}
    if "keras" in rows:
        clock = keras_timing.StepClock()
        started = time.perf_counter()
        model.fit(
            images,
            labels,
            batch_size=args.batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[clock],
        )
        row = {
            **keras_timing.fit_timing(clock, warmup, steps, args.batch_size),
            "fit_wall_s": time.perf_counter() - started,
        }
        row["peak_memory_bytes"], row["peak_memory_kind"] = keras_timing.peak_memory()
        row.update(evaluation(model, args, spe))
        row["notes"] = "model.fit on uint8 arrays, asynchronous callbacks"
        results["keras"] = row
    if "keras-trainer" in rows:
        batches = CifarBatches(Split(images, labels), args.batch_size, train=True, seed=0)
        # train.py's per-batch callbacks; checkpoints and schedules act per epoch: left out.
        trainer_callbacks = [SetEpoch(batches), StopOnNaN(), StopOnSignal()]
        clock = keras_timing.StepClock()
        started = time.perf_counter()
        model.fit(
            batches,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[*trainer_callbacks, clock],
        )
        row = {
            **keras_timing.fit_timing(clock, warmup, steps, args.batch_size),
            "fit_wall_s": time.perf_counter() - started,
        }
        row["peak_memory_bytes"], row["peak_memory_kind"] = keras_timing.peak_memory()
        row["first_step_note"] = "compiled by the keras row" if "keras" in rows else None
        names = " + ".join(type(c).__name__ for c in trainer_callbacks)
        row["notes"] = (
            f"model.fit on CifarBatches(train=True) + {names}, as train.py feeds it "
            "(batches gathered in the main thread, augmented on the device)"
        )
        results["keras-trainer"] = row
    return {
        "device": keras_timing.device_info(),
        "versions": keras_timing.versions(),
        "parameters": trainable_count(model),
        "model_source": MODEL_SOURCE,
        "steps_per_execution": spe,
        "warmup": warmup,
        "steps": steps,
        "rows": results,
    }


def evaluation(model: keras.Model, args: argparse.Namespace, spe: int) -> dict:
    """``model.evaluate``: a first call that compiles, then the timed batches."""
    if not args.eval_steps:
        return {}
    eval_steps = round_up(args.eval_steps, spe)
    images, labels = generated_batches(eval_steps * args.eval_batch_size, seed=1)
    first = spe * args.eval_batch_size
    started = time.perf_counter()
    model.evaluate(images[:first], labels[:first], batch_size=args.eval_batch_size, verbose=0)
    compile_s = time.perf_counter() - started
    clock = keras_timing.StepClock()
    model.evaluate(images, labels, batch_size=args.eval_batch_size, verbose=0, callbacks=[clock])
    seconds = clock.end[eval_steps - 1] - clock.begin[0]
    return {
        "eval_first_call_s": compile_s,
        "eval_images_per_s": eval_steps * args.eval_batch_size / seconds,
    }
