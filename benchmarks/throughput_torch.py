"""The ``torch`` row of ``benchmarks.throughput``: the same network in PyTorch
(``benchmarks.torch_resnet``), trained as the notes did (eager, channels_last, ``torch.optim.SGD``),
with crop, flip and normalisation on the device; ``mixed_bfloat16`` is ``torch.autocast``."""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import NUM_CLASSES, generated_batches, max_rss_bytes, train_row
from benchmarks.torch_resnet import TorchResNet, count_trainable
from keras_resnet.models import get_spec, parameter_count
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.data import CIFAR10_MEAN, CIFAR10_STD, PAD


def crop_flip(x: torch.Tensor) -> torch.Tensor:
    """The Keras model's RandomCropFlip on the device: padded random crop, random flip."""
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    top, left = torch.randint(0, 2 * PAD + 1, (2, n, 1), device=device)
    rows = top + torch.arange(h, device=device)
    cols = left + torch.arange(w, device=device)
    cols = torch.where(torch.rand(n, 1, device=device) < 0.5, cols.flip(1), cols)
    index = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


def run(args: argparse.Namespace, rows: list[str]) -> dict:
    """Train ``--warmup`` then ``--steps`` steps, evaluate ``--eval-steps`` batches."""
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True  # as kuangliu/pytorch-cifar does
    memory_format = (
        torch.channels_last
        if args.torch_memory_format == "channels_last"
        else torch.contiguous_format
    )
    model = TorchResNet(get_spec(args.model), NUM_CLASSES).to(device, memory_format=memory_format)
    parameters = count_trainable(model)
    expected = parameter_count(args.model, NUM_CLASSES)
    if parameters != expected:
        raise RuntimeError(f"PyTorch {args.model} has {parameters} parameters, Keras {expected}")
    if args.torch_compile:
        model = torch.compile(model)
    config = TrainConfig(model=args.model)  # the notes' SGD, as the Keras rows compile it
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    mixed = args.precision == "mixed_bfloat16"
    mean = torch.tensor([255.0 * m for m in CIFAR10_MEAN], device=device).view(1, 3, 1, 1)
    std = torch.tensor([255.0 * s for s in CIFAR10_STD], device=device).view(1, 3, 1, 1)

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
        # Keras's fit and the JAX step compute the accuracy too: the same work per step.
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
    row = train_row(first_step_s, time.perf_counter() - started, steps, batch, loss)
    if cuda:
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        row["peak_memory_kind"] = "device"
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
