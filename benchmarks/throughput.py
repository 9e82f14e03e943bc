"""Training and evaluation throughput: Keras ``model.fit`` vs a pure-JAX step vs PyTorch.

Run from the repository root (CPU or GPU; TensorFlow and tensorflow-datasets are never needed,
the data is generated)::

    python benchmarks/throughput.py --model resnet18 --batch-size 128 --steps 20
    python benchmarks/throughput.py --model resnet20 --steps 10 --warmup 2   # quick, on a CPU

Each framework runs in its own Python process, one after the other, so that compile caches,
peak-memory counters and GPU memory pools (JAX reserves most of the GPU when it starts) never
mix. The rows:

- ``keras``: the model exactly as ``train.py`` builds and compiles it
  (``keras_resnet.training._new_model``: crop and flip (``RandomCropFlip``) and
  ``input_normalization`` inside the model, ``TorchSGD`` with PyTorch-style L2, cross-entropy on
  logits, accuracy), trained with ``model.fit`` on uint8 arrays. Callbacks are asynchronous, so
  nothing waits for the device between steps.
- ``keras-trainer``: the same compiled model fed the way ``train.py`` feeds it: ``CifarBatches``
  (per-epoch shuffle, a gather of uint8 images in the main thread) with the trainer's per-batch
  callbacks (``SetEpoch``, ``StopOnNaN``, ``StopOnSignal``; ``TerminateOnNaN`` where those are
  missing). They are ``async_safe``, so they read each step's loss on Keras's thread pool
  while the next step runs. The progress bar is left off.
- ``jax``: the same Keras network (augmentation included) through ``model.stateless_call`` in
  a hand-written ``jax.jit`` step (``jax.value_and_grad``; the same SGD-momentum update with L2
  in jax.numpy; donated buffers). Its rate is the backend's limit: ``keras / jax`` is what
  ``fit`` costs.
- ``torch``: the same network in PyTorch (``benchmarks/torch_resnet.py``), channels_last,
  ``torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)``, crop, flip and normalisation
  on the device; ``--precision mixed_bfloat16`` uses ``torch.autocast(bfloat16)``.

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
import datetime
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
FRAMEWORKS = ("keras", "keras-trainer", "jax", "torch")
WORKERS = {"keras": "keras", "keras-trainer": "keras", "jax": "jax", "torch": "torch"}
# The notes' recipe (SPEC.md section 4); the Keras rows take theirs from TrainConfig.
LR, MOMENTUM, L2 = 0.1, 0.9, 5e-4
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


# ----------------------------------------------------------------------------- helpers


def slug(text: str) -> str:
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


def max_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def tensorflow_imported() -> dict:
    names = {m.split(".")[0] for m in sys.modules}
    return {name: name in names for name in ("tensorflow", "tensorflow_datasets")}


def generated_batches(n_images: int, seed: int = 0):
    """Random uint8 images and int32 labels: speed does not depend on the pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=n_images).astype(np.int32)
    return images, labels


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def fmt_rate(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_bytes(value, kind) -> str:
    if value is None:
        return "n/a"
    label = "device peak" if kind == "device" else "max RSS, CPU process"
    return f"{value / 2**30:.2f} GiB ({label})"


# ----------------------------------------------------------------------------- workers


def _jax_device_info() -> dict:
    import jax

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "count": len(jax.devices()),
    }


def _train_row(first_step_s: float, seconds: float, steps: int, batch: int, loss) -> dict:
    """The training columns every framework's worker reports."""
    return {
        "first_step_s": first_step_s,
        "train_seconds": seconds,
        "train_images_per_s": steps * batch / seconds,
        "train_step_ms": 1000 * seconds / steps,
        "final_loss": float(loss),
    }


def _jax_peak_memory() -> tuple[int | None, str]:
    import jax

    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return max_rss_bytes(), "max_rss_cpu"


def _jax_versions() -> dict:
    import jax
    import jaxlib
    import keras
    import numpy as np

    return {
        "keras": keras.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }


def _keras_setup(args):
    import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

    # isort: split
    import keras

    # Not keras.utils.set_random_seed: it imports TensorFlow whenever that is installed.
    keras.mixed_precision.set_global_policy(args.precision)
    return keras


def _trainer_model(args):
    """The model as train.py builds and compiles it, and where it came from."""
    from keras_resnet import training

    config = training.TrainConfig(
        model=args.model, batch_size=args.batch_size, precision=args.precision
    )
    config.validate()
    model = training._new_model(config, steps_per_epoch=1)
    source = "keras_resnet.training._new_model"
    if args.steps_per_execution is not None:
        model.steps_per_execution = args.steps_per_execution
    return model, source


def _make_clock(keras):
    class StepClock(keras.callbacks.Callback):
        """Wall-clock time when each step (or execution of several) begins and ends.

        It is ``async_safe``: Keras calls ``on_*_batch_end`` from a thread pool after converting
        the step's logs to Python floats, which waits for the device: the end times are when
        the device finished that step, and the training loop itself is never held up.
        """

        def __init__(self):
            super().__init__()
            self.async_safe = True
            self.begin: dict[int, float] = {}
            self.end: dict[int, float] = {}

        def on_train_batch_begin(self, batch, logs=None):
            self.begin.setdefault(batch, time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            self.end[batch] = time.perf_counter()

        def on_test_batch_begin(self, batch, logs=None):
            self.begin.setdefault(batch, time.perf_counter())

        def on_test_batch_end(self, batch, logs=None):
            self.end[batch] = time.perf_counter()

    return StepClock()


def _fit_timing(clock, warmup: int, steps: int, batch_size: int) -> dict:
    """First-step seconds, steady-state images/s and the median step from a StepClock."""
    ends = sorted(clock.end.items())
    first_end = ends[0][1]
    start = clock.end[warmup - 1]
    stop = clock.end[warmup + steps - 1]
    timed = [(b, t) for b, t in ends if b >= warmup - 1]
    per_step = [(t1 - t0) / (b1 - b0) for (b0, t0), (b1, t1) in itertools.pairwise(timed)]
    return {
        "first_step_s": first_end - clock.begin[0],
        "train_seconds": stop - start,
        "train_images_per_s": steps * batch_size / (stop - start),
        "train_step_ms": 1000 * (stop - start) / steps,
        "train_step_ms_median": 1000 * statistics.median(per_step) if per_step else None,
    }


def run_keras(args, rows: list[str]) -> dict:
    """``keras`` (fit on arrays) and ``keras-trainer`` (fit on CifarBatches) rows."""
    keras = _keras_setup(args)
    from keras_resnet import data as cifar

    model, source = _trainer_model(args)
    spe = int(getattr(model, "steps_per_execution", 1) or 1)
    warmup, steps = round_up(args.warmup, spe), round_up(args.steps, spe)
    n = warmup + steps
    images, labels = generated_batches(n * args.batch_size)
    info = {
        "device": _jax_device_info(),
        "versions": _jax_versions(),
        "parameters": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "model_source": source,
        "steps_per_execution": spe,
        "warmup": warmup,
        "steps": steps,
    }
    results = {}
    if "keras" in rows:
        clock = _make_clock(keras)
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
            **_fit_timing(clock, warmup, steps, args.batch_size),
            "fit_wall_s": time.perf_counter() - started,
        }
        row["peak_memory_bytes"], row["peak_memory_kind"] = _jax_peak_memory()
        row.update(_keras_eval(keras, model, args, spe))
        row["notes"] = "model.fit on uint8 arrays, asynchronous callbacks"
        results["keras"] = row
    if "keras-trainer" in rows:
        batches = cifar.CifarBatches(
            cifar.Split(images, labels), args.batch_size, train=True, seed=0
        )
        clock = _make_clock(keras)
        trainer_callbacks = _trainer_callbacks(keras, batches)
        started = time.perf_counter()
        model.fit(
            batches,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[*trainer_callbacks, clock],
        )
        row = {
            **_fit_timing(clock, warmup, steps, args.batch_size),
            "fit_wall_s": time.perf_counter() - started,
        }
        row["peak_memory_bytes"], row["peak_memory_kind"] = _jax_peak_memory()
        row["first_step_note"] = "compiled by the keras row" if "keras" in rows else None
        names = " + ".join(type(c).__name__ for c in trainer_callbacks)
        row["notes"] = (
            f"model.fit on CifarBatches(train=True) + {names}, as train.py feeds it "
            "(batches gathered in the main thread, augmented on the device)"
        )
        results["keras-trainer"] = row
    info["rows"] = results
    return info


def _trainer_callbacks(keras, batches) -> list:
    """train.py's per-batch callbacks: each reads the loss (or runs) after every step, which
    makes Keras call them synchronously. Checkpoints and schedules act per epoch: left out."""
    try:
        from keras_resnet import callbacks
    except ImportError:
        return [keras.callbacks.TerminateOnNaN()]
    found = [callbacks.SetEpoch(batches)] if hasattr(callbacks, "SetEpoch") else []
    if hasattr(callbacks, "StopOnNaN"):
        found.append(callbacks.StopOnNaN())
    else:
        found.append(keras.callbacks.TerminateOnNaN())
    if hasattr(callbacks, "StopOnSignal"):
        found.append(callbacks.StopOnSignal())
    return found


def _keras_eval(keras, model, args, spe: int) -> dict:
    if not args.eval_steps:
        return {}
    eval_steps = round_up(args.eval_steps, spe)
    images, labels = generated_batches(eval_steps * args.eval_batch_size, seed=1)
    first = spe * args.eval_batch_size
    started = time.perf_counter()
    model.evaluate(images[:first], labels[:first], batch_size=args.eval_batch_size, verbose=0)
    compile_s = time.perf_counter() - started
    clock = _make_clock(keras)
    model.evaluate(images, labels, batch_size=args.eval_batch_size, verbose=0, callbacks=[clock])
    seconds = clock.end[eval_steps - 1] - clock.begin[0]
    return {
        "eval_first_call_s": compile_s,
        "eval_images_per_s": eval_steps * args.eval_batch_size / seconds,
    }


def run_jax(args, rows) -> dict:
    """A hand-written jitted train step around the Keras model's stateless API."""
    _keras_setup(args)
    import jax
    import jax.numpy as jnp

    model, _ = _trainer_model(args)  # the same network, augmentation layer included
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    momenta = [jnp.zeros_like(w) for w in trainable]

    def loss_and_logits(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss = cross_entropy(logits, y)
        return loss, (non_trainable, logits)

    def cross_entropy(logits, y):
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=1))

    def accuracy(logits, y):
        return jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))

    def train_step(trainable, non_trainable, momenta, x, y):
        (loss, (non_trainable, logits)), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(
            trainable, non_trainable, x, y
        )
        new_weights, new_momenta = [], []
        for w, g, m in zip(trainable, grads, momenta, strict=True):
            g = g.astype(w.dtype) + L2 * w  # PyTorch's coupled weight decay, as TorchSGD
            m = MOMENTUM * m + g
            new_weights.append(w - LR * m)
            new_momenta.append(m)
        return new_weights, non_trainable, new_momenta, loss, accuracy(logits, y)

    def eval_step(trainable, non_trainable, x, y):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return cross_entropy(logits, y), accuracy(logits, y)

    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    eval_step = jax.jit(eval_step)

    warmup, steps, batch = args.warmup, args.steps, args.batch_size
    images, labels = generated_batches((warmup + steps) * batch)

    def batch_at(i):
        return images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]

    state = (trainable, non_trainable, momenta)
    started = time.perf_counter()
    *state, loss, _ = train_step(*state, *batch_at(0))
    jax.block_until_ready((state, loss))
    first_step_s = time.perf_counter() - started
    for i in range(1, warmup):
        *state, loss, _ = train_step(*state, *batch_at(i))
    jax.block_until_ready((state, loss))
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        *state, loss, _ = train_step(*state, *batch_at(i))
    jax.block_until_ready((state, loss))
    seconds = time.perf_counter() - started
    row = _train_row(first_step_s, seconds, steps, batch, loss)
    row["peak_memory_bytes"], row["peak_memory_kind"] = _jax_peak_memory()
    if args.eval_steps:
        eb = args.eval_batch_size
        x_eval, y_eval = generated_batches(args.eval_steps * eb, seed=1)
        trainable, non_trainable, _ = state
        started = time.perf_counter()
        jax.block_until_ready(eval_step(trainable, non_trainable, x_eval[:eb], y_eval[:eb]))
        row["eval_first_call_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out = [
            eval_step(trainable, non_trainable, *eval_batch)
            for eval_batch in (
                (x_eval[i * eb : (i + 1) * eb], y_eval[i * eb : (i + 1) * eb])
                for i in range(args.eval_steps)
            )
        ]
        jax.block_until_ready(out)
        row["eval_images_per_s"] = args.eval_steps * eb / (time.perf_counter() - started)
    row["notes"] = "jax.jit step on model.stateless_call, donated buffers"
    return {
        "device": _jax_device_info(),
        "versions": _jax_versions(),
        "parameters": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "warmup": warmup,
        "steps": steps,
        "rows": {"jax": row},
    }


def run_torch(args, rows) -> dict:
    """The same network in PyTorch, as the notes trained it (eager, channels_last)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from keras_resnet.data import CIFAR10_MEAN, CIFAR10_STD
    from torch_resnet import TorchResNet, count_trainable

    from keras_resnet.models import count_parameters, get_spec

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True  # as kuangliu/pytorch-cifar does
    spec = get_spec(args.model)
    memory_format = (
        torch.channels_last
        if args.torch_memory_format == "channels_last"
        else torch.contiguous_format
    )
    model = TorchResNet(spec, NUM_CLASSES).to(device, memory_format=memory_format)
    parameters = count_trainable(model)
    expected = count_parameters(args.model, NUM_CLASSES)
    if parameters != expected:
        raise RuntimeError(f"PyTorch {args.model} has {parameters} parameters, Keras {expected}")
    if args.torch_compile:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=L2)
    mixed = args.precision == "mixed_bfloat16"
    mean = torch.tensor([255.0 * m for m in CIFAR10_MEAN], device=device).view(1, 3, 1, 1)
    std = torch.tensor([255.0 * s for s in CIFAR10_STD], device=device).view(1, 3, 1, 1)

    def crop_flip(x):
        """The Keras model's RandomCropFlip on the device: 4-pixel padded crop, random flip."""
        n, c, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2, n, 1), device=device)
        rows = top + torch.arange(h, device=device)
        cols = left + torch.arange(w, device=device)
        cols = torch.where(torch.rand(n, 1, device=device) < 0.5, cols.flip(1), cols)
        index = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(c, device=device)[None, :, None, None]
        return padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]

    def on_device(images, labels, augment=False):
        """uint8 NHWC on the host -> (augmented,) normalised float NCHW on the device."""
        x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        if augment:
            x = crop_flip(x)
        x = ((x - mean) / std).contiguous(memory_format=memory_format)
        return x, labels.to(device, non_blocking=True)

    def host_tensors(n, seed):
        images, labels = generated_batches(n, seed)
        images, labels = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        return (images.pin_memory(), labels.pin_memory()) if cuda else (images, labels)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed)

    def train_step(images, labels):
        x, y = on_device(images, labels, augment=True)
        with autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).float().mean()

    warmup, steps, batch = args.warmup, args.steps, args.batch_size
    images, labels = host_tensors((warmup + steps) * batch, 0)

    def batch_at(i):
        return images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.train()
    started = time.perf_counter()
    loss, _ = train_step(*batch_at(0))
    sync()
    first_step_s = time.perf_counter() - started
    for i in range(1, warmup):
        loss, _ = train_step(*batch_at(i))
    sync()
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss, _ = train_step(*batch_at(i))
    sync()
    seconds = time.perf_counter() - started
    row = _train_row(first_step_s, seconds, steps, batch, loss)
    if cuda:
        row["peak_memory_bytes"], row["peak_memory_kind"] = (
            int(torch.cuda.max_memory_allocated()),
            "device",
        )
    else:
        row["peak_memory_bytes"], row["peak_memory_kind"] = max_rss_bytes(), "max_rss_cpu"
    if args.eval_steps:
        eb = args.eval_batch_size
        x_eval, y_eval = host_tensors(args.eval_steps * eb, 1)
        model.eval()

        @torch.inference_mode()
        def eval_step(i):
            x, y = on_device(x_eval[i * eb : (i + 1) * eb], y_eval[i * eb : (i + 1) * eb])
            with autocast():
                logits = model(x)
            return F.cross_entropy(logits.float(), y), (logits.argmax(1) == y).float().mean()

        started = time.perf_counter()
        eval_step(0)
        sync()
        row["eval_first_call_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(args.eval_steps):
            eval_step(i)
        sync()
        row["eval_images_per_s"] = args.eval_steps * eb / (time.perf_counter() - started)
    row["notes"] = (
        f"eager{' + torch.compile' if args.torch_compile else ''}, {args.torch_memory_format}"
        f"{', autocast bfloat16' if mixed else ''}, {torch.get_num_threads()} CPU threads"
    )
    return {
        "device": {
            "platform": device.type,
            "device_kind": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "count": torch.cuda.device_count() if cuda else 1,
        },
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
        },
        "parameters": parameters,
        "warmup": warmup,
        "steps": steps,
        "rows": {"torch": row},
    }


def worker_main(args) -> None:
    rows = [f for f in args.frameworks if WORKERS[f] == args.worker]
    try:
        result = {"jax": run_jax, "keras": run_keras, "torch": run_torch}[args.worker](args, rows)
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    result["imported"] = tensorflow_imported()
    result["max_rss_bytes"] = max_rss_bytes()
    Path(args.result_file).write_text(json.dumps(result, indent=2, default=str))


# ----------------------------------------------------------------------------- driver


def parse_args(argv=None) -> argparse.Namespace:
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


def _worker_argv(args, worker: str, result_file: str) -> list[str]:
    argv = [
        sys.executable, str(Path(__file__).resolve()),
        "--model", args.model, "--batch-size", str(args.batch_size),
        "--precision", args.precision, "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--eval-batch-size", str(args.eval_batch_size), "--eval-steps", str(args.eval_steps),
        "--frameworks", ",".join(args.frameworks),
        "--worker", worker, "--result-file", result_file,
    ]  # fmt: skip
    if args.steps_per_execution is not None:
        argv += ["--steps-per-execution", str(args.steps_per_execution)]
    if args.torch_compile:
        argv.append("--torch-compile")
    argv += ["--torch-memory-format", args.torch_memory_format]
    return argv


def run_worker(args, worker: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if worker == "torch":
        env.setdefault("JAX_PLATFORMS", "cpu")  # it imports keras_resnet only for the spec
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "result.json")
        started = time.perf_counter()
        print(f"[{worker}] running ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(
                _worker_argv(args, worker, result_file),
                env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout,
            )  # fmt: skip
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


def describe_device(workers: dict) -> tuple[str, str]:
    """A header phrase and a file-name slug for the device the rows ran on."""
    parts, device_slug = [], None
    for name in ("keras", "jax"):
        device = workers.get(name, {}).get("device")
        if device:
            parts.append(f"JAX {device['platform']} ({device['device_kind']})")
            device_slug = device_slug or (
                "cpu" if device["platform"] == "cpu" else slug(device["device_kind"])
            )
            break
    device = workers.get("torch", {}).get("device")
    if device:
        parts.append(f"PyTorch {device['platform']} ({device['device_kind']})")
        device_slug = device_slug or (
            "cpu" if device["platform"] == "cpu" else slug(device["device_kind"])
        )
    return ", ".join(parts) or "unknown", device_slug or "unknown"


def markdown_table(rows: dict) -> str:
    keras_rate = (rows.get("keras") or {}).get("train_images_per_s")
    lines = [
        "| framework | train img/s | vs keras | compile s | eval img/s | peak memory |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0][:80]} | | | | |")
            continue
        rate = row.get("train_images_per_s")
        vs = f"{rate / keras_rate:.2f}x" if rate and keras_rate else "-"
        first = row.get("first_step_s")
        compile_s = f"{first:.1f}" if first is not None else "-"
        if name == "keras-trainer" and row.get("first_step_note"):
            compile_s = f"({first:.1f}, compiled above)"
        lines.append(
            f"| {name} | {fmt_rate(rate)} | {vs} | {compile_s} | "
            f"{fmt_rate(row.get('eval_images_per_s'))} | "
            f"{fmt_bytes(row.get('peak_memory_bytes'), row.get('peak_memory_kind'))} |"
        )
    return "\n".join(lines)


def ratios(rows: dict) -> dict:
    keras_rate = (rows.get("keras") or {}).get("train_images_per_s")
    out = {}
    for other in ("jax", "torch", "keras-trainer"):
        rate = (rows.get(other) or {}).get("train_images_per_s")
        if keras_rate and rate:
            out[f"keras/{other}"] = keras_rate / rate
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    notes = []
    frameworks = list(args.frameworks)
    if "torch" in frameworks and importlib.util.find_spec("torch") is None:
        frameworks.remove("torch")
        notes.append("torch skipped: PyTorch is not importable here")
    args.frameworks = frameworks
    load_start = os.getloadavg()[0]
    rounds = []  # every worker once per round, interleaved, so a busy spell hits all alike
    for number in range(args.rounds):
        if args.rounds > 1:
            print(f"round {number + 1} of {args.rounds}", file=sys.stderr, flush=True)
        rounds.append(
            {w: run_worker(args, w) for w in dict.fromkeys(WORKERS[f] for f in frameworks)}
        )
    workers = rounds[0]
    rows = {}
    for framework in frameworks:
        found = []
        for results in rounds:
            result = results[WORKERS[framework]]
            row = (
                {"error": result["error"]}
                if "error" in result
                else result["rows"].get(framework, {"error": "no result"})
            )
            found.append(row)
        good = [row for row in found if "error" not in row]
        if not good:
            rows[framework] = found[0]
            continue
        good.sort(key=lambda row: row["train_images_per_s"])
        rows[framework] = dict(good[(len(good) - 1) // 2])  # the median round's row
        if args.rounds > 1:
            rows[framework]["train_images_per_s_rounds"] = [
                row.get("train_images_per_s") for row in found
            ]

    load_end = os.getloadavg()[0]
    if max(load_start, load_end) > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"warning: the host was busy (1-minute load average {load_start:.1f} before, "
            f"{load_end:.1f} after, on {os.cpu_count()} cores): CPU-bound rates are noisy"
        )
    device_text, device_slug = describe_device(workers)
    versions = {"python": platform.python_version()}
    for result in workers.values():
        versions.update(result.get("versions", {}))
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    steps_info = workers.get("keras", {})
    spe = steps_info.get("steps_per_execution")
    counts = [w["parameters"] for w in workers.values() if "parameters" in w]
    steps, warmup = steps_info.get("steps", args.steps), steps_info.get("warmup", args.warmup)
    header = (
        f"**{args.model}** ({f'{counts[0]:,}' if counts else '?'} trainable parameters), "
        f"batch {args.batch_size}, {args.precision}, {steps} timed steps after {warmup} "
        f"warm-up, eval batch {args.eval_batch_size} x {args.eval_steps}"
        f"{f', median of {args.rounds} interleaved rounds' if args.rounds > 1 else ''}"
        f"{f', steps_per_execution {spe}' if spe else ''}\n"
        f"device: {device_text}; host: {os.cpu_count()} CPU cores, load average "
        f"{load_start:.1f} -> {load_end:.1f}\n"
        f"versions: {', '.join(f'{k} {v}' for k, v in versions.items() if v)}; {date}"
    )
    table = markdown_table(rows)
    ratio = ratios(rows)
    ratio_lines = []
    if "keras/jax" in ratio:
        ratio_lines.append(
            f"keras/jax = {ratio['keras/jax']:.2f} (Keras fit reaches "
            f"{100 * ratio['keras/jax']:.0f}% of the hand-written JAX step)"
        )
    if "keras/torch" in ratio:
        ratio_lines.append(f"keras/torch = {ratio['keras/torch']:.2f}")
    if "keras/keras-trainer" in ratio:
        ratio_lines.append(
            f"keras/keras-trainer = {ratio['keras/keras-trainer']:.2f} (the trainer's input "
            "path and per-step log reads)"
        )
    source = steps_info.get("model_source", "keras_resnet.training._new_model")
    if source != "keras_resnet.training._new_model":
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
    for line in ratio_lines + notes:
        print(line)

    path = (
        Path(args.json)
        if args.json
        else RESULTS_DIR / (f"throughput-{slug(args.model)}-{device_slug}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
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
        "steps_per_execution": spe,
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
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 1 if any("error" in row for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
