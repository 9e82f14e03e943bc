"""The ``fit`` orchestration: one run from a ``TrainConfig`` to a finished run folder."""

from __future__ import annotations

import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from keras_resnet import environment
from keras_resnet.augment import RandomCropFlip
from keras_resnet.callbacks import (
    ResumableReduceLROnPlateau,
    StopOnNaN,
    StopOnSignal,
    TorchReduceLROnPlateau,
)
from keras_resnet.errors import ConfigError, DivergedError, RunFolderError
from keras_resnet.losses import SmoothedSparseCrossentropy
from keras_resnet.models import build, downsampling, get_spec
from keras_resnet.optimizers import TorchSGD
from keras_resnet.schedules import EpochCosine, Triangular
from keras_resnet.trainer import compile_cache, distributed, finetune, resume, tensorboard
from keras_resnet.trainer import data as cifar
from keras_resnet.trainer.callbacks import (
    Checkpoint,
    EpochLossSum,
    NoteLog,
    SetEpoch,
    Validate,
    check_finite,
    current_lr,
)
from keras_resnet.trainer.config import TrainConfig
from keras_resnet.trainer.data import cache
from keras_resnet.trainer.data.normalization import normalization_statistics
from keras_resnet.trainer.evaluation import evaluate
from keras_resnet.trainer.run_folder import CONFIG, RunFolder
from keras_resnet.trainer.state import ResumeState, kept


def load_data(config: TrainConfig) -> cifar.Dataset:
    source = (
        cifar.synthetic_cifar10(seed=config.seed)
        if config.synthetic
        else cifar.load_dataset(
            config.dataset, config.data_dir, config.image_size, config.max_memory_gb
        )
    )
    data = cifar.subset(source, config.train_size, config.val_size)
    if config.batch_size > len(data.train):
        raise ConfigError(
            "batch_size",
            f"must be at most the {len(data.train)} training images, got {config.batch_size}",
        )
    return data


def check_temporary_folder() -> None:
    """Refuse to start without a writable temporary folder (a full disk, ``ulimit -f 0``):
    TensorFlow's import needs one, and would fail deep inside it."""
    try:
        tempfile.gettempdir()
    except FileNotFoundError as error:
        raise RunFolderError(
            f"{error.strerror}: every folder tried ({error.filename}) refused a small test "
            "file. Free some disk space or raise the file-size limit (ulimit -f), or set TMPDIR "
            "to a writable folder"
        ) from None


def learning_rate(
    config: TrainConfig, steps_per_epoch: int = 1
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A number for the plateau schedules (their callbacks change it), else a per-step
    schedule.

    Step schedules live in the optimizer and count its iterations, so they resume exactly.
    """
    if config.schedule in ("plateau", "torch_plateau"):
        return config.lr
    if config.schedule == "cosine":
        return EpochCosine(config.lr, steps_per_epoch, config.epochs, min_lr=config.min_lr)
    if config.schedule == "triangular":
        return Triangular(
            peak_lr=config.lr,
            total_steps=config.epochs * steps_per_epoch,
            warmup_steps=min(config.warmup_steps, config.epochs * steps_per_epoch),
            start_lr=config.warmup_lr,
        )
    boundaries = list(config.lr_milestones)
    values = [config.lr * config.lr_factor**i for i in range(len(boundaries) + 1)]
    if config.warmup_steps:
        boundaries.insert(0, config.warmup_steps)
        values.insert(0, config.warmup_lr)
    if not boundaries:
        return config.lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def warn_about_schedule(config: TrainConfig, steps_per_epoch: int) -> None:
    """Say so when a warm-up or a milestone lies beyond the whole run: it is allowed (a short
    trial of a long recipe), but the learning rate then never reaches what was asked for."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "plateau":
        return
    # Steps are counted from 0; the steps schedule changes the rate after its boundary step.
    last = total - 1 if config.schedule == "steps" else total
    run = f"the whole run is {total} steps ({config.epochs} epochs of {steps_per_epoch})"
    if config.warmup_steps and config.warmup_steps >= last:
        print(
            f"warning: --warmup-steps {config.warmup_steps} is beyond the end of training: "
            f"{run}, so the learning rate never reaches --lr {config.lr}.",
            file=sys.stderr,
        )
    late = [m for m in config.lr_milestones if m >= last] if config.schedule == "steps" else []
    if late:
        print(
            f"warning: --lr-milestones {' '.join(map(str, late))} never take effect: {run}.",
            file=sys.stderr,
        )


def build_model(
    config: TrainConfig, steps_per_epoch: int, data: cifar.Dataset | None = None
) -> keras.Model:
    """The compiled model a run of ``config`` starts from: augmentation and normalisation
    inside, PyTorch-style SGD, the (smoothed) cross-entropy.

    With ``data`` the model takes its image size and classes, and keeps their names and the
    dataset's; without it, CIFAR-10's shape and ten unnamed classes.
    """
    shape = data.image_shape if data else (32, 32, 3)
    smallest = downsampling(get_spec(config.model))
    if min(shape[:2]) < smallest:
        raise ConfigError(
            "image_size",
            f"must be at least {smallest} pixels a side for {config.model}; the images of "
            f"{config.dataset} are {shape[0]}x{shape[1]}: pass a larger one",
        )
    model = build(
        config.model,
        num_classes=len(data.class_names) if data else 10,
        input_shape=shape,
        input_normalization=normalization_statistics(config.normalization, data),
        augmentation=RandomCropFlip(config.padding, config.cutout, config.seed, name="augment"),
        class_names=data.class_names if data else None,
        dataset=(data.source if data.source == "synthetic" else data.name) if data else None,
    )
    if config.freeze_backbone:
        finetune.freeze_backbone(model)
    return compile_model(model, config, steps_per_epoch)


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """``model`` compiled as a run of ``config`` trains it: PyTorch-style SGD on the config's
    learning-rate schedule, the (smoothed) cross-entropy, accuracy."""
    optimizer = TorchSGD(
        learning_rate(config, steps_per_epoch),
        momentum=config.momentum,
        nesterov=config.nesterov,
        l2=config.weight_decay,
    )
    model.compile(
        optimizer=optimizer,
        loss=SmoothedSparseCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    return model


# (config, steps per epoch, data) -> the compiled model a fresh run starts from.
ModelBuilder = Callable[[TrainConfig, int, cifar.Dataset], keras.Model]


@contextlib.contextmanager
def process_settings(seed: int, precision: str) -> Iterator[None]:
    """Seed every generator and set the dtype policy for one run; put all back afterwards,
    together with the distribution that ``distributed.setup`` chooses inside it."""
    from keras.src.backend.common import global_state  # Keras keeps its seed only here

    seed_keys = ("global_random_seed", "global_seed_generator")
    saved = (
        random.getstate(),
        np.random.get_state(),
        {key: global_state.get_global_attribute(key) for key in seed_keys},
        keras.mixed_precision.dtype_policy(),
        keras.distribution.distribution(),
    )
    # keras.utils.set_random_seed but for TensorFlow's seed, which imports TensorFlow (seconds):
    # the trainer draws from Python, NumPy and Keras only; TensorFlow reads files in order.
    random.seed(seed)
    np.random.seed(seed)
    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute("global_seed_generator", None)  # remade from the seed
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        python_state, numpy_state, keras_seed, policy, distribution = saved
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for key, value in keras_seed.items():
            global_state.set_global_attribute(key, value)
        keras.mixed_precision.set_global_policy(policy)
        keras.distribution.set_distribution(distribution)


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    topology: distributed.Topology | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    build: ModelBuilder | None = None,
) -> Path:
    """Train (or continue) the run described by ``config``; return its folder.

    ``topology`` comes from ``distributed.setup``; by default training uses every local device.
    Seeds, the dtype policy and the distribution are restored when it returns. ``build`` makes
    the model instead of ``build_model``: ``benchmarks.host_overhead`` passes one whose step
    costs next to nothing, to time what the trainer itself adds to every step.
    """
    compile_cache.enable()
    environment.require_trainer_backend()
    check_temporary_folder()
    run = RunFolder(config.run_dir)
    stop_on_signal = StopOnSignal(exit_message=lambda: interrupted(run))
    with stop_on_signal, process_settings(config.seed, config.precision):
        try:
            topology = topology or distributed.setup()
            distributed.check_batch_size(config.batch_size, topology)
            # Before the run folder is made, so that a refused run leaves no empty folder.
            data = load_data(config)
            run.write = topology.is_chief
            with run.locked():
                return _train(
                    config,
                    data,
                    run,
                    overwrite,
                    topology,
                    [*callbacks, stop_on_signal],
                    verbose,
                    build,
                )
        except KeyboardInterrupt:  # said while a second signal is still caught
            print(interrupted(run), flush=True)
            raise


def interrupted(run: RunFolder) -> str:
    """What a stopped run says: what is saved, read from the disk, and how to go on."""
    if not (run.path / CONFIG).is_file():
        return f"\nInterrupted before the run began: nothing of it is saved in {run}."
    return f"\nInterrupted. {kept(run)} Resume with: python train.py --resume {run}"


def _train(
    config: TrainConfig,
    data: cifar.Dataset,
    run: RunFolder,
    overwrite: bool,
    topology: distributed.Topology,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int | str,
    build: ModelBuilder | None,
) -> Path:
    """The run under its lock: start or resume it, fit, then test and write the results."""
    state = resume.resume_state(run, config, overwrite)
    shard = (topology.process_id, topology.num_processes)
    steps = len(_training_batches(config, data, topology, shard))
    warn_about_schedule(config, steps)
    model = (build or build_model)(config, steps, data)
    model, state = _start_or_resume(config, run, model, state)
    data = _keep_decoded(config, data, run)  # after the start: it clears an earlier run's files
    batches = _training_batches(config, data, topology, shard)
    scored = _scored_split(data)
    stop_on_nan = StopOnNaN()
    fit_callbacks = _fit_callbacks(
        config, data, run, state, batches, scored, topology, shard, stop_on_nan, callbacks
    )
    _fit(model, batches, config, state, fit_callbacks, verbose)
    _raise_if_diverged(stop_on_nan, run)
    metrics = _test(model, config, data, state, scored, topology, shard)
    _save_results(run, model, state, metrics, data, scored.name)
    _print_summary(run, state, metrics, data)
    return run.path


def _keep_decoded(config: TrainConfig, data: cifar.Dataset, run: RunFolder) -> cifar.Dataset:
    """A streamed folder read through the run folder's file of decoded images, so that only the
    first read of an image decodes it; streamed as before where the disk has no room for the
    file, or by the processes that do not write the run folder. Says which, in one line."""
    if data.source != "folder (streamed)":
        return data
    over = f"{config.dataset} is over --max-memory-gb {config.max_memory_gb:g}"
    if not run.write:
        print(f"{over}: its images are decoded batch by batch as training reads them.")
        return data
    try:
        cached = cache.keep_decoded(data, run.decoded_path)
    except OSError as error:
        print(
            f"{over}, and {run.decoded_path} cannot keep its decoded images ({error.strerror}): "
            "they are decoded batch by batch, every epoch."
        )
        return data
    print(
        f"{over}: its images are decoded the first time training reads them and kept in "
        f"{run.decoded_path} ({cache.size_text(cached.train.images.cache.nbytes)})."
    )
    return cached


class ScoredSplit(NamedTuple):
    """What each epoch is scored on, its name in the curves, and the log key that picks
    ``best.keras`` and cuts a plateau rate (None: nothing does)."""

    split: cifar.Split
    name: str
    monitor: str | None


def _scored_split(data: cifar.Dataset) -> ScoredSplit:
    """The validation split; without one the test set, for the history and the curves only:
    nothing reads its numbers to cut a rate or keep a model."""
    if data.validation is not None:
        return ScoredSplit(data.validation, "validation", "val_accuracy")
    return ScoredSplit(data.test, "test", None)


def _training_batches(
    config: TrainConfig, data: cifar.Dataset, topology: distributed.Topology, shard: tuple[int, int]
) -> cifar.CifarBatches:
    return cifar.CifarBatches(
        data.train,
        config.batch_size,
        train=True,
        seed=config.seed,
        devices=topology.devices,
        shard=shard,
    )


def _start_or_resume(
    config: TrainConfig, run: RunFolder, model: keras.Model, state: ResumeState | None
) -> tuple[keras.Model, ResumeState]:
    """A fresh run starts from ``model`` (with ``--init-from``'s weights) in a folder cleared of
    any earlier run; a resumed one from its checkpoint, at the learning rate it had reached."""
    if state is None:
        if config.init_from:  # before resume.start: a refused file leaves the folder as it was
            report = finetune.initialise(model, config.init_from)
            if run.write:
                print(report)
        resume.start(run, config)
        return model, ResumeState()
    model = resume.load_checkpoint(run, state, expected=model)
    if config.schedule in ("plateau", "torch_plateau"):
        model.optimizer.learning_rate.assign(state.learning_rate)
    print(f"Resuming {run} after epoch {state.epochs_done}.")
    return model, state


def _plateau(
    config: TrainConfig, state: ResumeState
) -> ResumableReduceLROnPlateau | TorchReduceLROnPlateau | None:
    """The plateau schedule's callback, with the counters the run had saved."""
    if config.schedule == "torch_plateau":
        return TorchReduceLROnPlateau(
            monitor="loss_sum",
            factor=config.lr_factor,
            patience=config.lr_patience,
            threshold=config.lr_threshold,
            min_lr=config.min_lr,
            verbose=True,
            state=state.plateau,
        )
    if config.schedule == "plateau":
        return ResumableReduceLROnPlateau(
            state=state.plateau,
            monitor="val_accuracy",
            mode="max",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=config.min_lr,
            verbose=1,
        )
    return None


def _fit_callbacks(
    config: TrainConfig,
    data: cifar.Dataset,
    run: RunFolder,
    state: ResumeState,
    batches: cifar.CifarBatches,
    scored: ScoredSplit,
    topology: distributed.Topology,
    shard: tuple[int, int],
    stop_on_nan: StopOnNaN,
    extra: Sequence[keras.callbacks.Callback],
) -> list[keras.callbacks.Callback]:
    """The callbacks in the order they must run: each reads what the ones before it logged,
    and ``extra`` (StopOnSignal last) comes after the checkpoint, so that a finished epoch is
    saved before it stops."""
    loss_sum = EpochLossSum(
        config.batch_size, min(len(data.train), len(batches) * config.batch_size)
    )
    plateau = _plateau(config, state)
    log_tensorboard = config.tensorboard and run.write
    return [
        SetEpoch(batches),
        stop_on_nan,
        Validate(scored.split, topology.devices, config.flip_tta, shard),
        loss_sum,
        *([NoteLog(loss_sum)] if config.log_format == "note" else []),
        *(tensorboard.callbacks(run.tensorboard_dir, batches) if log_tensorboard else []),
        *([plateau] if plateau else []),
        Checkpoint(run, plateau, scored.monitor, state),
        *extra,
    ]


def _fit(
    model: keras.Model,
    batches: cifar.CifarBatches,
    config: TrainConfig,
    state: ResumeState,
    callbacks: list[keras.callbacks.Callback],
    verbose: int | str,
) -> None:
    """``model.fit`` from the first unfinished epoch; its time is added to the run's."""
    started = time.time()
    model.fit(
        batches,
        epochs=config.epochs,
        initial_epoch=state.epochs_done,
        shuffle=False,  # CifarBatches shuffles from (seed, epoch); Keras's would not resume
        callbacks=callbacks,
        verbose=0 if config.log_format == "note" else verbose,  # no "Epoch 1/50"
    )
    state.seconds += time.time() - started


def _raise_if_diverged(stop_on_nan: StopOnNaN, run: RunFolder) -> None:
    if stop_on_nan.stopped_at:
        epoch, batch = stop_on_nan.stopped_at
        raise DivergedError(
            f"The loss became NaN or infinite at epoch {epoch}, batch {batch}; training stopped. "
            f"{kept(run)} Try a lower --lr with --overwrite or another --output-dir."
        )


def _test(
    model: keras.Model,
    config: TrainConfig,
    data: cifar.Dataset,
    state: ResumeState,
    scored: ScoredSplit,
    topology: distributed.Topology,
    shard: tuple[int, int],
) -> dict:
    """The test set's scores and what the run was, as ``metrics.json`` holds them."""
    metrics = evaluate(
        model, data.test, data.class_names, 1000, config.flip_tta, topology.devices, shard
    )
    return {
        "model": config.model,
        **metrics,
        "epochs": state.epochs_done,
        "seconds": round(state.seconds, 1),
        **(
            {"best_epoch": state.best_epoch, "best_validation_accuracy": state.best}
            if scored.monitor
            else {}
        ),
        "final_learning_rate": current_lr(model),
        "flip_tta": config.flip_tta,
        "data": data.source,
        "dataset": data.name,
        "class_names": list(data.class_names),
    }


def _save_results(
    run: RunFolder,
    model: keras.Model,
    state: ResumeState,
    metrics: dict,
    data: cifar.Dataset,
    eval_name: str,
) -> None:
    """The final model (never diverged weights), the metrics and figures; the run is then
    marked finished."""
    check_finite(model, state.epochs_done, run)
    run.save_model(model)
    run.finish(state, metrics, data.class_names, eval_name)


def _print_summary(run: RunFolder, state: ResumeState, metrics: dict, data: cifar.Dataset) -> None:
    if run.write:
        print_test_report(metrics, len(data.test))
        print(
            f"Test accuracy {100 * metrics['test_accuracy']:.2f}% after {state.epochs_done} "
            f"epochs ({metrics['seconds']:.0f} s). Results in {run}"
        )


def print_test_report(metrics: dict, images: int) -> None:
    """The notes' closing line (``%d`` of the percentage, as they printed it), the exact
    figure beside it, and the accuracy of every class over all of its test images."""
    matrix = np.asarray(metrics["confusion_matrix"])
    correct = int(matrix.trace())
    percent = 100 * correct / images
    print(f"Accuracy of the network on the {images} test images: {int(percent):d} %")
    print(f"Exactly {percent:.2f} % ({correct}/{images})")
    for name, row, right in zip(metrics["class_names"], matrix, matrix.diagonal(), strict=True):
        total = int(row.sum())
        share = 100 * right / total if total else 0.0
        print(f"Accuracy of {name:>10s} : {share:6.2f} % ({right}/{total})")
