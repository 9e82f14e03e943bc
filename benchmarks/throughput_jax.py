"""The ``jax`` row of ``benchmarks.throughput``: the trainer's Keras network (augmentation
included) through ``model.stateless_call`` in a hand-written ``jax.jit`` step.

Its rate is the backend's limit: ``keras / jax`` is what ``model.fit`` costs.
"""

from __future__ import annotations

import argparse
import time

import keras_resnet  # noqa: F401  (selects the JAX backend before keras is imported)

# isort: split
import jax
import jax.numpy as jnp

from benchmarks import keras_timing
from benchmarks.common import generated_batches, train_row
from benchmarks.throughput_keras import trainable_count, trainer_model
from keras_resnet.trainer.config import TrainConfig


def cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=1))


def accuracy(logits, labels):
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def run(args: argparse.Namespace, rows: list[str]) -> dict:
    """Train ``--warmup`` then ``--steps`` steps, evaluate ``--eval-steps`` batches."""
    model = trainer_model(args)
    config = TrainConfig(model=args.model)  # the notes' SGD, as the Keras rows compile it
    lr, momentum, l2 = config.lr, config.momentum, config.weight_decay
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    momenta = [jnp.zeros_like(w) for w in trainable]

    def loss_and_logits(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return cross_entropy(logits, y), (non_trainable, logits)

    def train_step(trainable, non_trainable, momenta, x, y):
        (loss, (non_trainable, logits)), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(
            trainable, non_trainable, x, y
        )
        new_weights, new_momenta = [], []
        for w, g, m in zip(trainable, grads, momenta, strict=True):
            g = g.astype(w.dtype) + l2 * w  # PyTorch's coupled weight decay, as TorchSGD
            m = momentum * m + g
            new_weights.append(w - lr * m)
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
    row = train_row(first_step_s, time.perf_counter() - started, steps, batch, loss)
    row["peak_memory_bytes"], row["peak_memory_kind"] = keras_timing.peak_memory()
    if args.eval_steps:
        eb = args.eval_batch_size
        x_eval, y_eval = generated_batches(args.eval_steps * eb, seed=1)
        trainable, non_trainable, _ = state
        started = time.perf_counter()
        jax.block_until_ready(eval_step(trainable, non_trainable, x_eval[:eb], y_eval[:eb]))
        row["eval_first_call_s"] = time.perf_counter() - started
        started = time.perf_counter()
        slices = [slice(i * eb, (i + 1) * eb) for i in range(args.eval_steps)]
        out = [eval_step(trainable, non_trainable, x_eval[s], y_eval[s]) for s in slices]
        jax.block_until_ready(out)
        row["eval_images_per_s"] = args.eval_steps * eb / (time.perf_counter() - started)
    row["notes"] = "jax.jit step on model.stateless_call, donated buffers"
    return {
        "device": keras_timing.device_info(),
        "versions": keras_timing.versions(),
        "parameters": trainable_count(model),
        "warmup": warmup,
        "steps": steps,
        "rows": {"jax": row},
    }
