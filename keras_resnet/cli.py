"""Command line: ``python train.py``, and ``python -m keras_resnet`` with the subcommands
train, evaluate, predict, list and experiment.

Every error a user can cause ends as one line on stderr and a non-zero exit code, never a
traceback: 2 for bad arguments, 1 for a run that cannot go on, 130 after Ctrl-C and 143
after SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
from collections.abc import Sequence
from pathlib import Path

from keras_resnet.data import DataUnavailableError
from keras_resnet.recipes import RECIPES, resolve
from keras_resnet.saving import RunError
from keras_resnet.training import RESUMABLE_CHANGES, TrainConfig, load_config

EXIT_FAILED, EXIT_USAGE = 1, 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every TrainConfig field; defaults are suppressed so we know what was given."""
    d = TrainConfig()
    a = parser.add_argument
    a("--recipe", help=f"preset: {', '.join(RECIPES)} (default {d.recipe}); flags override it")
    a("--model", help=f"registered name, see `python -m keras_resnet list` (default {d.model})")
    a("--epochs", type=_positive_int, help=f"default {d.epochs}")
    a("--batch-size", type=_positive_int, help=f"default {d.batch_size}")
    a("--lr", type=float, help=f"initial learning rate (default {d.lr})")
    a("--momentum", type=float, help=f"default {d.momentum}")
    a("--nesterov", action=argparse.BooleanOptionalAction, help="Nesterov momentum")
    a("--weight-decay", type=float, help=f"L2 in PyTorch's sense (default {d.weight_decay})")
    a("--schedule", help="plateau (cut when accuracy stalls; default) or steps (at milestones)")
    a("--lr-patience", type=_positive_int, help=f"stalled epochs before a cut ({d.lr_patience})")
    a("--lr-factor", type=float, help=f"learning-rate cut (default {d.lr_factor})")
    a("--min-lr", type=float, help=f"plateau schedule's floor (default {d.min_lr})")
    a("--lr-milestones", type=_positive_int, nargs="+", metavar="STEP", help="steps' cuts")
    a("--warmup-lr", type=float, help="steps schedule: learning rate during the warm-up")
    a("--warmup-steps", type=int, help="steps schedule: warm-up length in iterations")
    a(
        "--seed",
        type=int,
        help=f"fixes initial weights, data order, augmentation (default {d.seed})",
    )
    a("--label-smoothing", type=float, help="label smoothing of the loss (default 0)")
    a("--cutout", type=int, help="zero a random square of this many pixels a side (default 0)")
    a("--flip-tta", action=argparse.BooleanOptionalAction, help="average with mirror images")
    a("--data-dir", help="tfds data_dir holding (or to receive) cifar10; default: tfds's own")
    a("--synthetic", action="store_true", help="generated CIFAR-shaped data: no download needed")
    a("--train-size", type=_positive_int, help="train on the first N training images")
    a("--val-size", type=int, help="hold out N training images for validation (paper: 5000)")
    a("--precision", help="float32 (default) or mixed_bfloat16")
    a("--log-format", help="keras (progress bar, default) or note (the notes' periodic lines)")
    a("--output-dir", help="run folder (default runs/<model>; re-running resumes it)")
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved settings")
    a("--overwrite", action="store_true", help="replace a run already in the output folder")
    a("--devices", type=_positive_int, help="data-parallel over N local devices (default: all)")
    a("--coordinator", metavar="HOST:PORT", help="multi-host: process 0's address")
    a("--num-processes", type=_positive_int, help="multi-host: how many processes")
    a("--process-id", type=int, help="multi-host: this process's index, from 0")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if not given.get("synthetic"):
        given.pop("synthetic", None)
    if "lr_milestones" in given:
        given["lr_milestones"] = tuple(given["lr_milestones"])
    if not args.resume:
        return resolve(**given)
    saved = dataclasses.asdict(load_config(Path(args.resume)))
    fixed = sorted(k for k in given if k not in RESUMABLE_CHANGES and given[k] != saved.get(k))
    if fixed:
        raise RunError(
            f"--resume keeps the run's settings; cannot change {', '.join(fixed)} "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
        )
    return TrainConfig(**{**saved, **given, "output_dir": args.resume})


def _train(args: argparse.Namespace) -> int:
    from keras_resnet import distributed
    from keras_resnet.training import train

    config = config_from_args(args)
    config.validate()  # before joining other hosts
    topology = distributed.setup(
        args.devices, args.coordinator, args.num_processes, args.process_id
    )
    train(config, overwrite=args.overwrite, topology=topology)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from keras_resnet import commands

    return commands.evaluate(args)


def _predict(args: argparse.Namespace) -> int:
    from keras_resnet import commands

    return commands.predict(args)


def _experiment(args: argparse.Namespace) -> int:
    from keras_resnet import experiments

    flags = {
        k: getattr(args, k)
        for k in ("epochs", "train_size", "batch_size", "seed", "data_dir", "precision")
        if getattr(args, k) is not None
    }
    if args.synthetic:
        flags["synthetic"] = True
    output_dir = args.output_dir or f"runs/{args.study}"
    if args.study == "degradation":
        experiments.degradation(args.depths, output_dir, args.recipe, **flags)
    else:
        experiments.depth(args.models, output_dir, args.recipe, **flags)
    return 0


def _list(args: argparse.Namespace) -> int:
    from keras_resnet.models import count_parameters, get_spec, list_models

    print(f"{'model':<18} {'block':<18} {'depths':<16} {'shortcut':<8} {'params':>12}")
    for name in list_models():
        spec = get_spec(name)
        depths = "-".join(map(str, spec.depths))
        params = count_parameters(name)
        print(f"{name:<18} {spec.block:<18} {depths:<16} {spec.shortcut:<8} {params:>12,}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet", description="ResNet on CIFAR-10 with Keras 3 and JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model (same as python train.py)")
    add_train_arguments(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a saved model")
    evaluate.add_argument("model_path", metavar="MODEL.keras")
    evaluate.add_argument("--data-dir", help="tfds data_dir holding cifar10")
    evaluate.add_argument("--synthetic", action="store_true", help="the generated test set")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    evaluate.add_argument("--batch-size", type=_positive_int, default=1000)
    evaluate.add_argument(
        "--output-dir", help="where metrics.json goes (default: beside the model)"
    )
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="classify image files with a saved model")
    predict.add_argument("model_path", metavar="MODEL.keras")
    predict.add_argument("images", metavar="IMAGE", nargs="+")
    predict.add_argument("--top", type=_positive_int, default=3, help="classes shown per image")
    predict.set_defaults(run=_predict)

    listing = commands.add_parser("list", help="registered models and their parameter counts")
    listing.set_defaults(run=_list)

    experiment = commands.add_parser("experiment", help="the notes' experiments")
    studies = experiment.add_subparsers(dest="study", required=True)
    degradation = studies.add_parser("degradation", help="plain vs residual nets by depth")
    degradation.add_argument("--depths", type=_positive_int, nargs="+", default=[20, 32, 44, 56])
    depth = studies.add_parser("depth", help="test error by depth beside the paper's")
    depth.add_argument(
        "--models", nargs="+", default=["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    )
    for study in (degradation, depth):
        a = study.add_argument
        a("--recipe", default="paper", help="training recipe for every model (default paper)")
        a("--epochs", type=_positive_int, help="overrides the recipe's")
        a("--subset", type=_positive_int, dest="train_size", help="train on N images")
        a("--synthetic", action="store_true", help="generated data: no download")
        a("--batch-size", type=_positive_int)
        a("--seed", type=int)
        a("--data-dir", help="tfds data_dir holding cifar10")
        a("--precision", help="float32 (default) or mixed_bfloat16")
        a("--output-dir", help="the study's folder (default runs/<study>)")
        study.set_defaults(run=_experiment)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        parser.exit(EXIT_USAGE, f"error: {error}\n")
    except (RunError, DataUnavailableError) as error:
        parser.exit(EXIT_FAILED, f"error: {error}\n")
    except KeyboardInterrupt as interrupt:  # training printed how to resume
        return 128 + getattr(interrupt, "signum", signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    return run(make_parser(), argv)


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python train.py``: the ``train`` subcommand on its own."""
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train a ResNet on CIFAR-10 with the notes' recipe."
    )
    add_train_arguments(parser)
    parser.set_defaults(run=_train)
    return run(parser, argv)
