"""Command line: ``python train.py`` and ``python -m keras_resnet {train,evaluate,predict,list}``.

Every error a user can cause ends as one line on stderr and a non-zero exit code, never a
traceback: 2 for bad arguments, 1 for a run that cannot go on, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from keras_resnet.data import DataUnavailableError
from keras_resnet.training import RESUMABLE_CHANGES, RunError, TrainConfig

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


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
    a("--model", help=f"registered name, see `python -m keras_resnet list` (default {d.model})")
    a("--epochs", type=_positive_int, help=f"default {d.epochs}")
    a("--batch-size", type=_positive_int, help=f"default {d.batch_size}")
    a("--lr", type=float, help=f"initial learning rate (default {d.lr})")
    a("--momentum", type=float, help=f"default {d.momentum}")
    a("--weight-decay", type=float, help=f"L2 in PyTorch's sense (default {d.weight_decay})")
    a(
        "--lr-patience",
        type=_positive_int,
        help=f"epochs without improvement (default {d.lr_patience})",
    )
    a("--lr-factor", type=float, help=f"learning-rate cut (default {d.lr_factor})")
    a("--min-lr", type=float, help=f"default {d.min_lr}")
    a(
        "--seed",
        type=int,
        help=f"fixes initial weights, data order, augmentation (default {d.seed})",
    )
    a("--data-dir", help="tfds data_dir holding (or to receive) cifar10; default: tfds's own")
    a("--synthetic", action="store_true", help="generated CIFAR-shaped data: no download needed")
    a("--train-size", type=_positive_int, help="train on the first N training images")
    a("--val-size", type=int, help="hold out N training images for validation (paper: 5000)")
    a("--precision", help="float32 (default) or mixed_bfloat16")
    a("--log-format", help="keras (progress bar, default) or note (the notes' periodic lines)")
    a("--output-dir", help="run folder (default runs/<model>; re-running resumes it)")
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved settings")
    a("--overwrite", action="store_true", help="replace a run already in the output folder")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if not given.get("synthetic"):
        given.pop("synthetic", None)
    if not args.resume:
        return TrainConfig(**given)
    config_path = Path(args.resume) / "config.json"
    if not config_path.is_file():
        raise RunError(f"--resume {args.resume!r}: no run there (no config.json)")
    saved = json.loads(config_path.read_text())
    fixed = sorted(k for k in given if k not in RESUMABLE_CHANGES and given[k] != saved.get(k))
    if fixed:
        raise RunError(
            f"--resume keeps the run's settings; cannot change {', '.join(fixed)} "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
        )
    return TrainConfig(**{**saved, **given, "output_dir": args.resume})


def _train(args: argparse.Namespace) -> int:
    from keras_resnet.training import train

    train(config_from_args(args), overwrite=args.overwrite)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from keras_resnet import commands

    return commands.evaluate(args)


def _predict(args: argparse.Namespace) -> int:
    from keras_resnet import commands

    return commands.predict(args)


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
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        parser.exit(EXIT_USAGE, f"error: {error}\n")
    except (RunError, DataUnavailableError) as error:
        parser.exit(EXIT_FAILED, f"error: {error}\n")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


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
