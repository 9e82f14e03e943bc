"""Training and evaluation throughput: Keras ``model.fit`` vs a hand-written JAX step vs PyTorch,
each in a fresh process (``--worker``); benchmarks/README.md describes the rows and columns."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.common import (
    NUM_CLASSES,
    RESULTS_DIR,
    device_slug,
    fmt_rate,
    generated_batches,
    jax_device,
    max_rss_bytes,
    non_negative_int,
    positive_int,
    publish,
    round_up,
    rows_chosen,
    run_worker,
    send_result,
    slug,
    tensorflow_imported,
    utc_now,
)

FRAMEWORKS = ("keras", "keras-trainer", "jax", "torch")
WORKERS = {"keras": "keras", "keras-trainer": "keras", "jax": "jax", "torch": "torch"}
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10's, for a recipe's projected run


def trainer_config(args: argparse.Namespace):
    """The ``TrainConfig`` every row's network and SGD come from: ``--recipe``'s (default: the
    notes' settings on ResNet-18), with ``--model``, ``--batch-size``, ``--precision`` over it."""
    from keras_resnet.trainer.config import TrainConfig

    given = {"model": args.model, "batch_size": args.batch_size, "precision": args.precision}
    given = {k: v for k, v in given.items() if v is not None}
    if not args.recipe:
        given = {"model": "resnet18", "batch_size": 128, "precision": "float32", **given}
    return TrainConfig(recipe=args.recipe or "note", **given)


def trainer_model(args: argparse.Namespace, config):
    """The compiled model of a ``train.py`` run of ``config``: augmentation inside."""
    import keras

    from keras_resnet.trainer.fit import build_model

    keras.mixed_precision.set_global_policy(config.precision)
    model = build_model(config, steps_per_epoch=1)
    model.steps_per_execution = args.steps_per_execution
    return model


def peak_memory(device_peak: int | None) -> dict:
    """The device's peak bytes where it counts them (GPUs), else this process's max RSS."""
    if device_peak is None:
        return {"peak_memory_bytes": max_rss_bytes(), "peak_memory_kind": "max_rss_cpu"}
    return {"peak_memory_bytes": int(device_peak), "peak_memory_kind": "device"}


def jax_peak_memory() -> dict:
    import jax

    return peak_memory((jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"))


def keras_worker(args: argparse.Namespace, config) -> dict:
    """``keras`` (fit on uint8 arrays) and ``keras-trainer`` (fit on ``CifarBatches`` with
    the trainer's per-batch callbacks), timed per step by an ``async_safe`` callback: Keras
    calls it once a step's logs are numbers, that is once the device has finished the step."""
    import keras

    from keras_resnet.callbacks import StopOnNaN, StopOnSignal
    from keras_resnet.trainer.callbacks import SetEpoch
    from keras_resnet.trainer.data import CifarBatches, Split

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.async_safe, self.start, self.end = True, None, {}

        def on_train_batch_begin(self, batch, logs=None):
            self.start = self.start or time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end[batch] = time.perf_counter()

        on_test_batch_begin, on_test_batch_end = on_train_batch_begin, on_train_batch_end

    model = trainer_model(args, config)
    spe, warmup, steps, batch = model.steps_per_execution, args.warmup, args.steps, args.batch_size
    images, labels = generated_batches(args.images)

    def fit(data, callbacks=()) -> dict:
        clock = StepClock()
        model.fit(*data, epochs=1, shuffle=False, verbose=0, callbacks=[*callbacks, clock])
        seconds = clock.end[warmup + steps - 1] - clock.end[warmup - 1]
        return {"first_step_s": clock.end[min(clock.end)] - clock.start,
                "train_images_per_s": steps * batch / seconds, **jax_peak_memory()}  # fmt: skip

    rows = {}
    if "keras" in args.frameworks:
        rows["keras"] = fit((images, labels, batch))
        if args.eval_steps:
            eval_steps, eb = args.eval_steps, args.eval_batch_size
            x, y = generated_batches(args.eval_images, seed=1)
            started = time.perf_counter()
            model.evaluate(x[: spe * eb], y[: spe * eb], batch_size=eb, verbose=0)  # compiles
            rows["keras"]["eval_first_call_s"] = time.perf_counter() - started
            clock = StepClock()
            model.evaluate(x, y, batch_size=eb, verbose=0, callbacks=[clock])
            seconds = clock.end[eval_steps - 1] - clock.start
            rows["keras"]["eval_images_per_s"] = eval_steps * eb / seconds
    if "keras-trainer" in args.frameworks:
        batches = CifarBatches(Split(images, labels), batch, train=True, seed=0)
        rows["keras-trainer"] = fit((batches,), [SetEpoch(batches), StopOnNaN(), StopOnSignal()])
        rows["keras-trainer"]["compiled_above"] = "keras" in args.frameworks
    parameters = sum(int(w.numpy().size) for w in model.trainable_weights)
    return {"rows": rows, "parameters": parameters, "device": jax_device()}


def jax_worker(args: argparse.Namespace, config) -> dict:
    """The same Keras network through ``model.stateless_call`` in a jitted step written by hand
    (the recipe's SGD with PyTorch-style L2, donated buffers): the backend's limit."""
    import jax
    import jax.numpy as jnp

    model = trainer_model(args, config)
    lr, momentum, l2, nesterov = config.lr, config.momentum, config.weight_decay, config.nesterov

    def loss_and_accuracy(trainable, non_trainable, x, y, training):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=training)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
        loss = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=1))
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))
        return loss, (non_trainable, accuracy)

    def train_step(trainable, non_trainable, momenta, x, y):
        grad = jax.value_and_grad(loss_and_accuracy, has_aux=True)
        (loss, (non_trainable, accuracy)), grads = grad(trainable, non_trainable, x, y, True)
        weights, new_momenta = [], []
        for w, g, m in zip(trainable, grads, momenta, strict=True):
            g = g.astype(w.dtype) + l2 * w
            m = momentum * m + g
            weights.append(w - lr * (g + momentum * m if nesterov else m))
            new_momenta.append(m)
        return weights, non_trainable, new_momenta, loss, accuracy

    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    eval_step = jax.jit(lambda *a: loss_and_accuracy(*a, training=False))
    trainable = [v.value for v in model.trainable_variables]
    state = [trainable, [v.value for v in model.non_trainable_variables]]
    state.append([jnp.zeros_like(w) for w in trainable])

    def step(x, y):
        nonlocal state
        *state, loss, _ = train_step(*state, x, y)
        return loss

    row = time_train(args, step, jax.block_until_ready, *generated_batches(args.images))
    row.update(jax_peak_memory())
    eval_data = generated_batches(args.eval_images, seed=1)
    row.update(time_eval(args, lambda x, y: eval_step(*state[:2], x, y), jax.block_until_ready,
                         *eval_data))  # fmt: skip
    return {"rows": {"jax": row}, "device": jax_device()}


def torch_worker(args: argparse.Namespace, config) -> dict:
    """The same network in PyTorch (``benchmarks.torch_resnet``): eager, channels_last,
    ``torch.optim.SGD`` with the recipe's settings, crop, flip and normalisation on the device;
    ``mixed_bfloat16`` is ``torch.autocast``."""
    import torch
    import torch.nn.functional as F

    from benchmarks.torch_resnet import TorchResNet, count_trainable
    from keras_resnet.models import get_spec
    from keras_resnet.trainer.data import CIFAR10_MEAN, CIFAR10_STD, PAD

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True  # as kuangliu/pytorch-cifar does
    model = TorchResNet(get_spec(config.model), NUM_CLASSES)
    parameters = count_trainable(model)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), config.lr, config.momentum, 0, config.weight_decay, config.nesterov
    )
    mean = torch.tensor([255.0 * m for m in CIFAR10_MEAN], device=device).view(1, 3, 1, 1)
    std = torch.tensor([255.0 * s for s in CIFAR10_STD], device=device).view(1, 3, 1, 1)

    def on_device(images, labels, augment: bool):
        """uint8 NHWC on the host -> (cropped and flipped,) normalised NCHW on the device."""
        x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        if augment:  # RandomCropFlip: a padded random crop and a random flip
            n, c, h, w = x.shape
            padded = F.pad(x, (PAD,) * 4)
            top, left = torch.randint(0, 2 * PAD + 1, (2, n, 1), device=device)
            rows, cols = top + torch.arange(h, device=device), left + torch.arange(w, device=device)
            cols = torch.where(torch.rand(n, 1, device=device) < 0.5, cols.flip(1), cols)
            index = torch.arange(n, device=device)[:, None, None, None]
            channel = torch.arange(c, device=device)[None, :, None, None]
            x = padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        return x, labels.to(device, non_blocking=True).long()

    def loss_and_accuracy(images, labels, augment: bool):
        x, y = on_device(images, labels, augment)
        with torch.autocast(device.type, torch.bfloat16, config.precision == "mixed_bfloat16"):
            logits = model(x)
        # Keras's fit and the JAX step compute the accuracy too: the same work per step.
        return F.cross_entropy(logits.float(), y), (logits.argmax(1) == y).float().mean()

    def train_step(images, labels):
        loss, _ = loss_and_accuracy(images, labels, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    @torch.inference_mode()
    def eval_step(images, labels):
        return loss_and_accuracy(images, labels, False)

    def host_tensors(n: int, seed: int = 0):
        tensors = [torch.from_numpy(a) for a in generated_batches(n, seed)]
        return [t.pin_memory() for t in tensors] if cuda else tensors

    def sync(_):
        if cuda:
            torch.cuda.synchronize()

    model.train()
    row = time_train(args, train_step, sync, *host_tensors(args.images))
    row.update(peak_memory(torch.cuda.max_memory_allocated() if cuda else None))
    model.eval()
    row.update(time_eval(args, eval_step, sync, *host_tensors(args.eval_images, seed=1)))
    kind = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    return {
        "rows": {"torch": row},
        "parameters": parameters,
        "device": {"platform": device.type, "device_kind": kind, "count": 1},
        "torch_threads": torch.get_num_threads(),
    }


def time_train(args: argparse.Namespace, step, sync, images, labels) -> dict:
    """``--warmup`` then ``--steps`` calls of ``step(images, labels)``, a batch each: the first
    (compiling) call and the steady rate, each clock stopped once the device has finished."""
    batch, loss = args.batch_size, None
    started = time.perf_counter()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(loss)
            timed_from = time.perf_counter()
        loss = step(images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch])
        if i == 0:
            sync(loss)
            first = time.perf_counter() - started
    sync(loss)
    seconds = time.perf_counter() - timed_from
    return {"first_step_s": first, "train_images_per_s": args.steps * batch / seconds}


def time_eval(args: argparse.Namespace, step, sync, images, labels) -> dict:
    """``--eval-steps`` batches of ``step(images, labels)``: its first call, then the rate."""
    if not args.eval_steps:
        return {}
    eb = args.eval_batch_size
    started = time.perf_counter()
    sync(step(images[:eb], labels[:eb]))
    first = time.perf_counter() - started
    started = time.perf_counter()
    out = [step(images[i * eb : (i + 1) * eb], labels[i * eb : (i + 1) * eb])
           for i in range(args.eval_steps)]  # fmt: skip
    sync(out)
    seconds = time.perf_counter() - started
    return {"eval_first_call_s": first, "eval_images_per_s": args.eval_steps * eb / seconds}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", help="a train.py recipe: its model, batch, precision, SGD")
    parser.add_argument("--model", help="any registered name (default: resnet18)")
    parser.add_argument("--batch-size", type=positive_int, help="default: 128")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--steps", type=positive_int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first")
    parser.add_argument("--eval-batch-size", type=positive_int, default=512)
    parser.add_argument("--eval-steps", type=non_negative_int, help="default: --steps; 0: none")
    parser.add_argument("--steps-per-execution", type=positive_int, default=1, help="Keras rows'")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="some of the rows")
    parser.add_argument("--rounds", type=positive_int, default=1, help="interleaved, median")
    parser.add_argument("--json", help="default: benchmarks/results/throughput-<model>-<device>")
    parser.add_argument("--worker", choices=("keras", "jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.frameworks = rows_chosen(parser, args.frameworks, FRAMEWORKS, "--frameworks")
    spe = args.steps_per_execution  # whole executions only, the same steps for every row
    args.steps, args.warmup = round_up(args.steps, spe), round_up(args.warmup, spe)
    args.eval_steps = args.steps if args.eval_steps is None else round_up(args.eval_steps, spe)
    config = trainer_config(args)
    args.model, args.batch_size, args.precision = config.model, config.batch_size, config.precision
    args.images = (args.warmup + args.steps) * args.batch_size
    args.eval_images = args.eval_steps * args.eval_batch_size
    return args


def median_round(found: list[dict]) -> dict:
    """One row from its rounds: the median round's by training rate, or the first error."""
    good = sorted((r for r in found if "error" not in r), key=lambda r: r["train_images_per_s"])
    if not good:
        return found[0]
    rates = {"train_images_per_s_rounds": [r.get("train_images_per_s") for r in found]}
    return {**good[(len(good) - 1) // 2], **(rates if len(found) > 1 else {})}


def markdown_table(rows: dict) -> str:
    keras_rate = rows.get("keras", {}).get("train_images_per_s")
    lines = [
        "| framework | train img/s | vs keras | compile s | eval img/s | peak memory |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0][:80]} | | | | |")
            continue
        rate, first = row["train_images_per_s"], f"{row['first_step_s']:.1f}"
        kind = "device peak" if row["peak_memory_kind"] == "device" else "max RSS, CPU process"
        lines.append(
            f"| {name} | {fmt_rate(rate)} | {f'{rate / keras_rate:.2f}x' if keras_rate else '-'} "
            f"| {f'({first}, compiled above)' if row.get('compiled_above') else first} | "
            f"{fmt_rate(row.get('eval_images_per_s'))} | "
            f"{row['peak_memory_bytes'] / 2**30:.2f} GiB ({kind}) |"
        )
    return "\n".join(lines)


def projection(args: argparse.Namespace, rows: dict) -> dict | None:
    """``--recipe``'s whole run: epochs x (its training images at the keras-trainer rate + the
    images it evaluates, twice with flip TTA, at the keras evaluation rate)."""
    train = rows.get("keras-trainer", {}).get("train_images_per_s")
    evaluate = rows.get("keras", {}).get("eval_images_per_s")
    if not (args.recipe and train and evaluate):
        return None
    config = trainer_config(args)
    evaluated = (config.val_size or TEST_IMAGES) * (2 if config.flip_tta else 1)
    epoch_s = (TRAIN_IMAGES - config.val_size) / train + evaluated / evaluate
    return {"epochs": config.epochs, "epoch_s": epoch_s, "run_s": config.epochs * epoch_s}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

        work = {"keras": keras_worker, "jax": jax_worker, "torch": torch_worker}[args.worker]
        result = work(args, trainer_config(args))
        versions = {m: sys.modules[m].__version__ for m in ("keras", "jax", "torch")
                    if m in sys.modules}  # fmt: skip
        send_result({**result, "versions": versions, "imported": tensorflow_imported()})
        return 0
    notes = []
    if "torch" in args.frameworks and importlib.util.find_spec("torch") is None:
        args.frameworks.remove("torch")
        notes.append("torch skipped: PyTorch is not importable here")
    workers = list(dict.fromkeys(WORKERS[f] for f in args.frameworks))
    # The torch worker reads keras_resnet's specs only: JAX stays off the GPU there.
    envs = {w: {**os.environ, **({"JAX_PLATFORMS": "cpu"} if w == "torch" else {})}
            for w in workers}  # fmt: skip
    load, rounds = [os.getloadavg()[0]], []
    for number in range(args.rounds):  # every worker once a round: a busy spell hits all alike
        print(f"round {number + 1} of {args.rounds}: {', '.join(workers)}", file=sys.stderr)
        rounds.append({w: run_worker("throughput", [*argv, "--worker", w], envs[w])
                       for w in workers})  # fmt: skip
    load.append(os.getloadavg()[0])
    if max(load) > 0.5 * (os.cpu_count() or 1):
        notes.append(f"warning: the host was busy (1-minute load average {load[0]:.1f} before, "
                     f"{load[1]:.1f} after, on {os.cpu_count()} cores): CPU-bound rates are "
                     "noisy")  # fmt: skip
    rows = {}
    for name in args.frameworks:
        found = [r[WORKERS[name]] for r in rounds]
        rows[name] = median_round([r["rows"][name] if "rows" in r else r for r in found])
    first = [r for r in rounds[0].values() if "error" not in r]
    imported = sorted({m for r in rounds for w in r.values() for m in w.get("imported", [])})
    if imported:
        notes.append(f"imported during the run: {', '.join(imported)} (should not be)")
    device = ", ".join(sorted({f"{'PyTorch' if 'torch_threads' in r else 'JAX'} "
                               f"{r['device']['platform']} ({r['device']['device_kind']})"
                               for r in first}))  # fmt: skip
    versions = {"python": platform.python_version()}
    for result in first:
        versions.update(result["versions"])
    parameters = next((r["parameters"] for r in first if "parameters" in r), 0)
    spe = args.steps_per_execution
    header = (
        f"**{args.model}** ({parameters:,} trainable parameters), batch {args.batch_size}, "
        f"{args.precision}{f', recipe {args.recipe}' if args.recipe else ''}, {args.steps} timed "
        f"steps after {args.warmup} warm-up, eval batch {args.eval_batch_size} x "
        f"{args.eval_steps}{f', median of {args.rounds} rounds' if args.rounds > 1 else ''}"
        f"{f', steps_per_execution {spe}' if spe > 1 else ''}\n"
        f"device: {device or 'unknown'}; host: {os.cpu_count()} CPU cores, load average "
        f"{load[0]:.1f} -> {load[1]:.1f}\n"
        f"versions: {', '.join(f'{k} {v}' for k, v in versions.items())}; {utc_now()}"
    )
    rates = {n: r["train_images_per_s"] for n, r in rows.items() if "error" not in r}
    ratios = {f"keras/{n}": rates["keras"] / rate for n, rate in rates.items()
              if n != "keras" and "keras" in rates}  # fmt: skip
    lines = [f"{k} = {v:.2f}" for k, v in ratios.items()]
    if "keras/jax" in ratios:
        lines.append(f"Keras fit reaches {ratios['keras/jax']:.0%} of the hand-written JAX step")
    if projected := projection(args, rows):
        lines.append(
            f"{args.recipe}: {projected['epochs']} epochs x {projected['epoch_s']:.1f} s "
            f"(training at the keras-trainer rate, evaluation at the keras one) = "
            f"{projected['run_s'] / 60:.1f} min projected, from generated images"
        )
    where = device_slug(first[0]["device"] if first else {})
    path = Path(args.json or RESULTS_DIR / f"throughput-{slug(args.model)}-{where}.json")
    publish("throughput", path, header, markdown_table(rows), lines + notes, model=args.model,
            recipe=args.recipe, batch_size=args.batch_size, precision=args.precision,
            steps=args.steps, warmup=args.warmup, eval_batch_size=args.eval_batch_size,
            eval_steps=args.eval_steps, rounds=args.rounds, steps_per_execution=spe,
            parameters=parameters, device=device, device_slug=where, versions=versions,
            results=rows, ratios=ratios, projection=projected, imported=imported)  # fmt: skip
    return 1 if any("error" in row for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
