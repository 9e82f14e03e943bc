"""Command line: ``python train.py``, and ``python -m keras_resnet`` with the subcommands
train, evaluate, predict, list, experiment and export.

Each subcommand is one function with typed arguments; this module only turns flags into those
arguments. The errors a user can cause (``keras_resnet.errors``) end as one line on stderr:
exit code 2 for a bad setting, shown as its flag, and 1 for a run that cannot go on. 130 after
Ctrl-C, 143 after SIGTERM. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from keras_resnet import __version__, saving
from keras_resnet.errors import ConfigError, KerasResnetError
from keras_resnet.export import FORMATS as EXPORT_FORMATS
from keras_resnet.torch_reader import SUFFIXES as TORCH_SUFFIXES
from keras_resnet.trainer.config import (
    LOG_FORMATS,
    NORMALIZATION_NAMES,
    NOTES,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    TrainConfig,
)

MODEL_HELP = "a .keras file, or NAME:WEIGHTS for published weights (resnet56:cifar10; see list)"
DEGRADATION_DEPTHS = (20, 32, 44, 56)
DEPTH_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


# The subcommands.
def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    devices: int | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> int:
    from keras_resnet.trainer import distributed, fit

    topology = distributed.setup(devices, coordinator, num_processes, process_id)
    fit.train(config, overwrite=overwrite, topology=topology)
    return 0


def evaluate(
    model_path: Path,
    *,
    data_dir: str | None = None,
    synthetic: bool = False,
    seed: int = 0,
    batch_size: int = 1000,
    output_dir: Path | None = None,
    dataset: str | None = None,
    max_memory_gb: float = 4.0,
) -> int:
    """Test accuracy and per-class accuracy of a saved model, or ``NAME:WEIGHTS``, on
    ``dataset`` (default: the one it was trained on, saved in it; else CIFAR-10); the results
    go beside it (for ``NAME:WEIGHTS``, in the working folder)."""
    if seed < 0:
        raise ConfigError("seed", f"must be 0 or more, got {seed}")
    if not max_memory_gb > 0:
        raise ConfigError("max_memory_gb", f"must be a positive number, got {max_memory_gb}")
    saving.check_model_source(model_path)  # before Keras is imported: a bad path answers at once
    from keras_resnet.trainer import compile_cache, evaluation

    compile_cache.enable()  # before loading the model compiles its initialisers
    model = saving.open_model(model_path)
    metrics = evaluation.evaluate_saved(
        model, str(model_path), data_dir, synthetic, seed, batch_size, dataset, max_memory_gb
    )
    report_stem = saving.output_stem(model_path)
    metrics_path, figure_path = evaluation.write_report(metrics, report_stem, output_dir)
    accuracy, loss = metrics["test_accuracy"], metrics["test_loss"]
    print(f"{metrics['dataset']} test accuracy: {100 * accuracy:.2f}%  test loss: {loss:.4f}")
    for name, accuracy in metrics["per_class_accuracy"].items():
        print(f"  {name:<11} {100 * accuracy:6.2f}%")
    print(f"wrote {metrics_path} and {figure_path}")
    return 0


def predict(model_path: Path, images: Sequence[Path], top: int = 3) -> int:
    """The ``top`` likeliest classes of each image file."""
    from keras_resnet.trainer import images as image_files

    saving.check_model_source(model_path)  # before Keras is imported: a bad path answers at once
    for image in images:
        image_files.check_image_file(image)
    from keras_resnet.trainer import evaluation

    model = saving.open_model(model_path)
    ranked_classes = evaluation.classify_files(model, str(model_path), images, top)
    for path, ranked in zip(images, ranked_classes, strict=True):
        print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))
    if evaluation.class_names(model, str(model_path)) is None:
        print(
            f"note: {model_path} holds no class names, so classes show as indices", file=sys.stderr
        )
    return 0


def list_models() -> int:
    """The registry, with trainable parameter counts for 10 classes and published weights
    (``NAME:WEIGHTS`` loads them)."""
    from keras_resnet.pretrained import weights_of
    from keras_resnet.registry import get_spec, list_models, parameter_count

    print(
        f"{'model':<18} {'block':<18} {'depths':<16} {'shortcut':<8} {'params':>12}  "
        "pretrained weights"
    )
    for name in list_models():
        spec = get_spec(name)
        depths = "-".join(map(str, spec.depths))
        params = parameter_count(name)
        weights = ", ".join(f"{name}:{w}" for w in weights_of(name))
        print(
            f"{name:<18} {spec.block:<18} {depths:<16} {spec.shortcut:<8} {params:>12,}  "
            f"{weights}".rstrip()
        )
    return 0


def experiment(
    study: str, models: Sequence, output_dir: Path | None, recipe: str, **settings
) -> int:
    """The notes' studies: ``degradation`` (depths) or ``depth`` (model names)."""
    from keras_resnet.trainer import experiments

    output_dir = output_dir or Path("runs") / study
    if study == "degradation":
        experiments.degradation(models, output_dir, recipe, **settings)
    else:
        experiments.depth(models, output_dir, recipe, **settings)
    return 0


def export(
    model_path: Path,
    *,
    format: str = "saved_model",
    output: Path | None = None,
    overwrite: bool = False,
) -> int:
    """Write a saved model, or ``NAME:WEIGHTS``, as a TensorFlow SavedModel or ONNX file
    (default: beside it; for ``NAME:WEIGHTS``, in the working folder)."""
    from keras_resnet import export as exporting

    saving.check_model_source(model_path)  # before Keras is imported: a bad path answers at once
    import keras

    model = saving.open_model(model_path)
    output = output or exporting.default_output(saving.output_stem(model_path), format)
    exporting.export(model, output, format, overwrite)
    normalises = any(isinstance(layer, keras.layers.Normalization) for layer in model.layers)
    pixels = "raw 0-255 pixels" if normalises else "the inputs it was trained on (no normalisation)"
    print(f"wrote {output}: it takes float32 images {tuple(model.input.shape)}, {pixels}")
    return 0


# Flags to arguments.
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _choices(values: Sequence) -> str:
    return ", ".join(map(str, values))


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every TrainConfig field; defaults are left unset so that the recipe's apply."""
    d = NOTES
    a = parser.add_argument
    a("--recipe", help=f"preset: {_choices(RECIPES)} (default note); flags override it")
    a("--model", help=f"registered name, see `python -m keras_resnet list` (default {d['model']})")
    a("--epochs", type=_positive_int, help=f"default {d['epochs']}")
    a("--batch-size", type=_positive_int, help=f"default {d['batch_size']}")
    a("--lr", type=float, help=f"initial learning rate (default {d['lr']})")
    a("--momentum", type=float, help=f"default {d['momentum']}")
    a("--nesterov", action=argparse.BooleanOptionalAction, help="Nesterov momentum")
    a("--weight-decay", type=float, help=f"L2 in PyTorch's sense (default {d['weight_decay']})")
    a("--schedule", help=f"{_choices(SCHEDULES)} (default {d['schedule']})")
    a("--lr-patience", type=_positive_int, help=f"plateaus: stalled epochs ({d['lr_patience']})")
    a("--lr-factor", type=float, help=f"learning-rate cut (default {d['lr_factor']})")
    a("--lr-threshold", type=float, help=f"torch_plateau: relative gain ({d['lr_threshold']})")
    a("--min-lr", type=float, help=f"plateaus' floor, cosine's end (default {d['min_lr']})")
    a("--lr-milestones", type=_positive_int, nargs="+", metavar="STEP", help="steps' cuts")
    a("--warmup-lr", type=float, help="steps or triangular schedule: warm-up learning rate")
    a("--warmup-steps", type=int, help="steps or triangular schedule: warm-up iterations")
    a("--seed", type=int, help="fixes initial weights, data order, augmentation (default 0)")
    a("--label-smoothing", type=float, help="label smoothing of the loss (default 0)")
    a("--cutout", type=int, help="zero a random square of this many pixels a side (default 0)")
    a("--padding", type=int, help=f"random crop's padding; 0: flips only ({d['padding']})")
    a(
        "--normalization",
        help=f"{_choices(NORMALIZATION_NAMES)}; data: the training images' mean and std "
        f"(default {d['normalization']}; a recipe's cifar10 becomes data on other datasets)",
    )
    a("--flip-tta", action=argparse.BooleanOptionalAction, help="average with mirror images")
    a("--dataset", help="a tfds image dataset (cifar100, svhn_cropped, ...) or folder:PATH")
    a("--image-size", type=_positive_int, nargs="+", metavar="PIXELS", help="resize: H [W]")
    a("--max-memory-gb", type=float, help="a bigger folder: is streamed (default 4)")
    a("--data-dir", help="tfds data_dir holding (or to receive) the dataset; default: tfds's")
    a("--synthetic", action="store_const", const=True, help="generated data: no download")
    a("--train-size", type=_positive_int, help="train on the first N training images")
    a("--val-size", type=int, help="hold out N training images for validation (paper: 5000)")
    a("--precision", help=f"{_choices(PRECISIONS)} (default {d['precision']})")
    a("--log-format", help=f"{_choices(LOG_FORMATS)} (default {d['log_format']})")
    a(
        "--output-dir",
        help="run folder (default runs/<model>[-synthetic|-<dataset>]; re-running resumes it)",
    )
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved settings")
    a(
        "--overwrite",
        action="store_true",
        help="replace a finished run or one of other settings in the output folder (its files "
        "are removed when training starts); an unfinished run of the same settings continues, "
        "so the same command can be run again after a crash",
    )
    a("--devices", type=_positive_int, help="data-parallel over N local devices (default: all)")
    a("--coordinator", metavar="HOST:PORT", help="multi-host: process 0's address")
    a("--num-processes", type=_positive_int, help="multi-host: how many processes")
    a("--process-id", type=int, help="multi-host: this process's index, from 0")
    a("--tensorboard", action=argparse.BooleanOptionalAction, help="log to RUN/tensorboard/")
    a(
        "--init-from",
        metavar="SOURCE",
        help=f"start from a .keras model, PyTorch {'/'.join(TORCH_SUFFIXES)} weights, or "
        "published weights NAME:WEIGHTS (resnet20:cifar10; see list)",
    )
    a("--freeze-backbone", action="store_const", const=True, help="train only the head")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The flags given, on top of the recipe, or on top of the saved run with ``--resume``
    (``train`` then refuses any setting that may not change)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if not args.resume:
        return TrainConfig(**given)
    from keras_resnet.trainer.run_folder import RunFolder

    return dataclasses.replace(
        RunFolder(args.resume).read_config(), **given, output_dir=args.resume
    )


def _run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.init_from and not args.resume:  # before Keras is imported: a bad path answers at once
        saving.require_file(args.init_from)
    return train(
        config,
        overwrite=args.overwrite,
        devices=args.devices,
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )


# The experiments' own flags, declared once: (flag, argparse keywords) by setting name.
EXPERIMENT_SETTINGS = {
    "epochs": ("--epochs", {"type": _positive_int, "help": "overrides the recipe's"}),
    "train_size": ("--subset", {"type": _positive_int, "help": "train on N images"}),
    "synthetic": (
        "--synthetic",
        {"action": "store_const", "const": True, "help": "generated data: no download"},
    ),
    "batch_size": ("--batch-size", {"type": _positive_int}),
    "seed": ("--seed", {"type": int}),
    "data_dir": ("--data-dir", {"help": "tfds data_dir holding cifar10"}),
    "precision": ("--precision", {"help": _choices(PRECISIONS)}),
}


def _run_experiment(args: argparse.Namespace) -> int:
    settings = {
        name: getattr(args, name) for name in EXPERIMENT_SETTINGS if getattr(args, name) is not None
    }
    models = args.depths if args.study == "degradation" else args.models
    return experiment(args.study, models, args.output_dir, args.recipe, **settings)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet", description="ResNet on CIFAR-10 with Keras 3 and JAX."
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train a model (same as python train.py)")
    add_train_arguments(train_parser)
    train_parser.set_defaults(run=_run_train, parser=train_parser)

    evaluate_parser = commands.add_parser("evaluate", help="test accuracy of a saved model")
    a = evaluate_parser.add_argument
    a("model_path", metavar="MODEL", type=Path, help=MODEL_HELP)
    a("--dataset", help="tfds name or folder:PATH (default: the model's own, else cifar10)")
    a("--data-dir", help="tfds data_dir holding the dataset")
    a("--max-memory-gb", type=float, default=4.0, help="a bigger folder: is streamed")
    a("--synthetic", action="store_true", help="the generated test set")
    a("--seed", type=int, default=0, help="which generated images (the classes stay the same)")
    a("--batch-size", type=_positive_int, default=1000)
    a("--output-dir", type=Path, help="where the results go (default: beside the model)")
    evaluate_parser.set_defaults(
        parser=evaluate_parser,
        run=lambda args: evaluate(
            args.model_path,
            data_dir=args.data_dir,
            synthetic=args.synthetic,
            seed=args.seed,
            batch_size=args.batch_size,
            output_dir=args.output_dir,
            dataset=args.dataset,
            max_memory_gb=args.max_memory_gb,
        ),
    )

    predict_parser = commands.add_parser("predict", help="classify image files with a saved model")
    a = predict_parser.add_argument
    a("model_path", metavar="MODEL", type=Path, help=MODEL_HELP)
    a("images", metavar="IMAGE", nargs="+", type=Path)
    a("--top", type=_positive_int, default=3, help="classes shown per image")
    predict_parser.set_defaults(
        parser=predict_parser, run=lambda args: predict(args.model_path, args.images, args.top)
    )

    listing = commands.add_parser("list", help="registered models and their parameter counts")
    listing.set_defaults(parser=listing, run=lambda args: list_models())

    export_parser = commands.add_parser("export", help="write a saved model for serving")
    a = export_parser.add_argument
    a("model_path", metavar="MODEL", type=Path, help=MODEL_HELP)
    a("--format", choices=EXPORT_FORMATS, default="saved_model", help="default saved_model")
    a("--output", type=Path, help="default: MODEL_saved_model/ or MODEL.onnx beside MODEL")
    a("--overwrite", action="store_true", help="replace an existing --output")
    export_parser.set_defaults(
        parser=export_parser,
        run=lambda args: export(
            args.model_path, format=args.format, output=args.output, overwrite=args.overwrite
        ),
    )

    experiment_parser = commands.add_parser("experiment", help="the notes' experiments")
    studies = experiment_parser.add_subparsers(dest="study", required=True)
    degradation = studies.add_parser("degradation", help="plain vs residual nets by depth")
    degradation.add_argument(
        "--depths", type=_positive_int, nargs="+", default=list(DEGRADATION_DEPTHS)
    )
    depth = studies.add_parser("depth", help="test error by depth beside the paper's")
    depth.add_argument("--models", nargs="+", default=list(DEPTH_MODELS))
    for study in (degradation, depth):
        study.add_argument("--recipe", default="paper", help="recipe for every model (paper)")
        for name, (flag, keywords) in EXPERIMENT_SETTINGS.items():
            study.add_argument(flag, dest=name, **keywords)
        study.add_argument("--output-dir", type=Path, help="the study's folder (runs/<study>)")
        study.set_defaults(run=_run_experiment, parser=study)
    return parser


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"keras-resnet {__version__}")


def _flag(parser: argparse.ArgumentParser, parameter: str) -> str:
    """The flag that sets ``parameter`` in ``parser``, or the parameter's own name."""
    for action in parser._actions:
        if action.dest == parameter and action.option_strings:
            return action.option_strings[-1]
    return parameter


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        parser.exit(
            error.exit_code, f"error: {_flag(args.parser, error.parameter)} {error.reason}\n"
        )
    except KerasResnetError as error:
        parser.exit(error.exit_code, f"error: {error}\n")
    except KeyboardInterrupt as interrupt:  # training printed how to resume
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    except BrokenPipeError:  # the reader left (``list | head``): what it read is what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(make_parser(), argv)


def exit_quietly(code: int) -> NoReturn:
    """End the program with ``code``. A signal that comes while it ends (a second Ctrl-C
    while XLA's threads wind down) ends it at once with the same code, not with a traceback;
    once the interpreter tears down (when Python puts its own handlers back to the defaults,
    which would let the signal kill it) such a signal is ignored."""

    def leave(signum, frame):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def ignore_signals() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)
    atexit.register(ignore_signals)  # atexit runs before the teardown resets the handlers
    sys.exit(code)


def console() -> NoReturn:
    """The ``keras-resnet`` command."""
    exit_quietly(main())


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python train.py``: the ``train`` subcommand on its own."""
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a ResNet on CIFAR-10 with the notes' recipe."
    )
    _add_version(parser)
    add_train_arguments(parser)
    parser.set_defaults(run=_run_train, parser=parser)
    return run(parser, argv)
