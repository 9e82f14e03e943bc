"""Training throughput of one network, each framework in a fresh process: ``keras`` is ``fit``
on uint8 arrays as ``train.py`` compiles the model, ``keras-trainer`` the same fed as
``train.py`` feeds it, ``jax`` a jitted step written by hand (the backend's limit), ``torch``
PyTorch. Each runs an untimed epoch of ``--steps``, then a timed one; compile s is how much
longer the first took. eval img/s is Keras's ``evaluate``, peak memory the device's (GPUs count
it). ``--recipe`` projects the recipe's run; docs/performance.md has the figures."""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import itertools
import platform
import sys

from benchmarks import common
from keras_resnet.registry import parameter_count

FRAMEWORKS = ("keras", "keras-trainer", "jax", "torch")  # a row's worker: its name up to "-"


def trainer_config(args: argparse.Namespace):
    """The ``TrainConfig`` every row's network and SGD come from: ``--recipe``'s (default: the
    notes' settings on ResNet-18 in float32), with ``--model`` and ``--batch-size`` over it."""
    from keras_resnet.trainer.config import TrainConfig

    given = {k: v for k, v in (("model", args.model), ("batch_size", args.batch_size)) if v}
    if not args.recipe:
        given = {"model": "resnet18", "batch_size": 128, "precision": "float32", **given}
    return TrainConfig(recipe=args.recipe or "note", **given)


def trainer_model(args: argparse.Namespace):
    """The compiled model of a ``train.py`` run: augmentation inside."""
    import keras

    from keras_resnet.trainer.fit import build_model

    keras.mixed_precision.set_global_policy(args.precision)
    model = build_model(trainer_config(args), steps_per_epoch=1)
    model.steps_per_execution = args.steps_per_execution
    return model


def on_jax() -> dict:
    """Where a row ran on JAX, and the device's peak memory where it counts it (GPUs)."""
    import jax

    device = jax.devices()[0]
    peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    return {"device": f"{device.platform} ({device.device_kind})", "peak_bytes": peak}


def row(epochs: list, batch: int, kind: str = "train") -> dict:
    """A warm-up epoch's and a timed one's (start clocks, end clocks, steps) as images/s and how
    much longer the first took (compiling)."""
    (warmup, warm_end, _), (start, end, steps) = epochs[-2:]
    extra = max(0.0, (warm_end[0] - warmup[0]) - (end[0] - start[0]))
    return {f"{kind}_images_per_s": steps * batch / (end[0] - start[0]), f"{kind}_compile_s": extra}


def keras_worker(args: argparse.Namespace) -> dict:
    """``keras`` (fit on arrays, then evaluate) and ``keras-trainer`` (fit as train.py fits)."""
    from keras_resnet.callbacks import StopOnNaN, StopOnSignal
    from keras_resnet.trainer.callbacks import SetEpoch

    model, names, batch = trainer_model(args), args.worker.split(","), args.batch_size
    data, rows = batches(args), {}
    if "keras" in names:
        clock, eb, split = common.epoch_clock(), args.eval_batch_size, data.split
        model.fit(split.images, split.labels, batch, 2, shuffle=False, verbose=0, callbacks=[clock])
        rows["keras"] = row(clock.epochs, batch)
        if args.eval_steps:
            eval_data = common.generated_batches(args.eval_steps * eb, seed=1)
            for _ in range(2):  # the first compiles
                model.evaluate(*eval_data, batch_size=eb, verbose=0, callbacks=[clock])
            rows["keras"].update(row(clock.epochs, eb, "eval"))
    if "keras-trainer" in names:
        clock = common.epoch_clock()
        callbacks = [SetEpoch(data), StopOnNaN(), StopOnSignal(), clock]
        model.fit(data, epochs=2, verbose=0, callbacks=callbacks)
        rows["keras-trainer"] = row(clock.epochs, batch)
    return {name: {**found, **on_jax()} for name, found in rows.items()}


def jax_worker(args: argparse.Namespace) -> dict:
    """The same Keras network and optimizer through ``stateless_call`` and ``stateless_apply``
    in a jitted step written by hand, its buffers donated."""
    import jax
    import jax.numpy as jnp

    model = trainer_model(args)
    model.optimizer.build(model.trainable_variables)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
        loss = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=1))
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))
        return loss, (non_trainable, accuracy)

    @jax.jit(donate_argnums=0)
    def train_step(state, x, y):
        trainable, non_trainable, optimizer_variables = state
        grad = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (non_trainable, accuracy)), grads = grad(trainable, non_trainable, x, y)
        trainable, optimizer_variables = model.optimizer.stateless_apply(
            optimizer_variables, grads, trainable
        )
        return (trainable, non_trainable, optimizer_variables), (loss, accuracy)

    variables = model.trainable_variables, model.non_trainable_variables, model.optimizer.variables
    state = [tuple([v.value for v in group] for group in variables)]

    def step(x, y):
        state[0], metrics = train_step(state[0], x, y)
        return metrics

    return {"jax": {**row(common.epochs_of(batches(args), 2, step), args.batch_size), **on_jax()}}


def torch_worker(args: argparse.Namespace) -> dict:
    """The same network in PyTorch (``benchmarks.torch_resnet``): eager, channels_last,
    ``torch.optim.SGD`` with the recipe's settings, crop, flip and normalisation on the device
    as ``RandomCropFlip`` does them; ``mixed_bfloat16`` is ``torch.autocast``."""
    import torch
    import torch.nn.functional as F

    from benchmarks.torch_resnet import TorchResNet
    from keras_resnet.models import get_spec
    from keras_resnet.trainer.data import CIFAR10_MEAN, CIFAR10_STD, PAD

    config, cuda = trainer_config(args), torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True  # as kuangliu/pytorch-cifar does
    model = TorchResNet(get_spec(config.model)).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), config.lr, config.momentum, 0, config.weight_decay, config.nesterov
    )
    mean, std = (torch.tensor([255.0 * v for v in values], device=device).view(1, 3, 1, 1)
                 for values in (CIFAR10_MEAN, CIFAR10_STD))  # fmt: skip

    def step(images, labels):
        x = torch.from_numpy(images).to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        n, _, h, w = x.shape
        crops = F.pad(x, (PAD,) * 4).unfold(2, h, 1).unfold(3, w, 1)  # every crop, as a view
        top, left = torch.randint(0, 2 * PAD + 1, (2, n), device=device)
        x = crops[torch.arange(n, device=device), :, top, left]
        x = torch.where(torch.rand(n, 1, 1, 1, device=device) < 0.5, x.flip(3), x)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels).to(device, non_blocking=True).long()
        with torch.autocast(device.type, torch.bfloat16, config.precision == "mixed_bfloat16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        accuracy = (logits.argmax(1) == y).float().mean()  # as Keras's fit and the JAX step do
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), accuracy

    epochs = common.epochs_of(batches(args), 2, step, lambda _: cuda and torch.cuda.synchronize())
    kind = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    peak = torch.cuda.max_memory_allocated() if cuda else None
    found = {"device": f"{device.type} ({kind})", "peak_bytes": peak}
    return {"torch": {**row(epochs, args.batch_size), **found}}


def batches(args: argparse.Namespace):
    """``--steps`` batches of generated images, shuffled and gathered as ``train.py`` does."""
    from keras_resnet.trainer.data import CifarBatches, Split

    split = Split(*common.generated_batches(args.steps * args.batch_size))
    return CifarBatches(split, args.batch_size, train=True, seed=0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", help="a train.py recipe: its model, batch, precision, SGD")
    parser.add_argument("--model", help="any registered name (default: resnet18)")
    parser.add_argument("--batch-size", type=common.positive_int, help="default: 128")
    parser.add_argument("--steps", type=common.positive_int, default=20, help="of each epoch")
    parser.add_argument("--eval-batch-size", type=common.positive_int, default=512)
    at_least_0 = functools.partial(common.positive_int, minimum=0)
    parser.add_argument("--eval-steps", type=at_least_0, help="keras's; default: --steps")
    parser.add_argument("--steps-per-execution", type=common.positive_int, default=1)
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=FRAMEWORKS)
    parser.add_argument("--rounds", type=common.positive_int, default=1, help="median of")
    parser.add_argument("--json", help="default: benchmarks/results/throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.frameworks = [name for name in FRAMEWORKS if name in args.frameworks]
    spe = args.steps_per_execution  # whole executions only, the same steps for every row
    args.steps = -(-args.steps // spe) * spe
    args.eval_steps = -(-(args.steps if args.eval_steps is None else args.eval_steps) // spe) * spe
    config = trainer_config(args)
    args.model, args.batch_size, args.precision = config.model, config.batch_size, config.precision
    if args.worker:
        work = {"keras": keras_worker, "jax": jax_worker, "torch": torch_worker}
        common.send_result(work[args.worker.split(",")[0].split("-")[0]](args))
        return 0
    workers = itertools.groupby(args.frameworks, lambda name: name.split("-")[0])
    units = [",".join(names) for _, names in workers]
    rows = common.run_rows("throughput", units, argv, args.rounds, ("train_images_per_s",))
    keras_rate, cells = rows.get("keras", {}).get("train_images_per_s"), []
    for name, found in rows.items():
        if "error" in found:
            cells.append([name, f"failed: {found['error'].splitlines()[0][:80]}", "", "", "", ""])
            continue
        rate, peak = found["train_images_per_s"], found["peak_bytes"]
        cells.append([name, common.fmt_rate(rate),
                      f"{rate / keras_rate:.2f}x" if keras_rate else "-",
                      f"{found['train_compile_s']:.1f}",
                      common.fmt_rate(found.get("eval_images_per_s")),
                      "-" if peak is None else f"{peak / 2**30:.2f} GiB"])  # fmt: skip
    columns = ["framework", "train img/s", "vs keras", "compile s", "eval img/s", "peak memory"]
    devices = sorted({found["device"] for found in rows.values() if "device" in found})
    versions = {m: importlib.metadata.version(m) for m in ("keras", "jax", "torch")
                if importlib.util.find_spec(m)}  # fmt: skip
    notes = [f"on {', '.join(devices)}; " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    train = rows.get("keras-trainer", {}).get("train_images_per_s")
    evaluate, projected = rows.get("keras", {}).get("eval_images_per_s"), None
    if args.recipe and train and evaluate:  # the recipe's run on CIFAR-10, evaluation included
        evaluated = (config.val_size or 10_000) * (2 if config.flip_tta else 1)  # flip TTA: twice
        epoch_s = (50_000 - config.val_size) / train + evaluated / evaluate
        projected = {"epochs": config.epochs, "epoch_s": epoch_s, "run_s": config.epochs * epoch_s}
        notes.append(f"{args.recipe}: {config.epochs} epochs x {epoch_s:.1f} s (training at the "
                     "keras-trainer rate, evaluation at the keras one) = "
                     f"{projected['run_s'] / 60:.1f} min projected")  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k not in ("frameworks", "json", "worker")}
    settings["parameters"] = parameter_count(args.model)
    common.publish("throughput", args.json, settings, common.markdown(columns, "lrrrrl", cells),
                   notes, devices=devices, versions=versions, results=rows,
                   projection=projected)  # fmt: skip
    return 1 if any("error" in found for found in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
