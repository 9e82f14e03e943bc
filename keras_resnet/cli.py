"""Command line: ``python train.py``, and ``python -m keras_resnet`` with the subcommands
train, evaluate, predict, list, experiment and export.

Each subcommand is one function with typed arguments (``keras_resnet.commands``); this module
only turns flags into those arguments, and each setting's flag comes from its declaration in
``TrainConfig``. The errors a user can cause (``keras_resnet.errors``) end as one line on stderr:
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
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from keras_resnet import __version__, checks, saving
from keras_resnet.commands import (
    DEGRADATION_DEPTHS,
    DEPTH_MODELS,
    EVALUATE_SETTINGS,
    evaluate,
    experiment,
    export,
    list_models,
    predict,
    train,
)
from keras_resnet.errors import ConfigError, KerasResnetError
from keras_resnet.export import FORMATS as EXPORT_FORMATS
from keras_resnet.trainer.config import SETTINGS, TrainConfig

MODEL_HELP = "a .keras file, or NAME:WEIGHTS for published weights (resnet56:cifar10; see list)"


# Flags to arguments: TrainConfig declares every setting's type, default, help and check.
POSITIONALS = {"model_path": "MODEL", "images": "IMAGE"}  # how errors name positional arguments


def add_settings(
    parser: argparse.ArgumentParser,
    names: Sequence[str] = tuple(SETTINGS),
    shown: dict[str, str] | None = None,
) -> None:
    """A flag for each setting in ``names``, as ``TrainConfig`` declares it. Flags default to
    None, so the recipe's value applies; ``shown`` names the default a command takes instead."""
    hints = typing.get_type_hints(TrainConfig)
    for name in names:
        meta = SETTINGS[name].metadata
        default = (shown or {}).get(name, meta["shown"])
        if default is None and meta["notes"] not in (None, ()):
            notes = meta["notes"]
            default = ("on" if notes else "off") if isinstance(notes, bool) else str(notes)
        keywords = _flag_type(hints[name])
        parser.add_argument(
            "--" + name.replace("_", "-"),
            help=f"{meta['help']} (default {default})" if default else meta["help"],
            metavar=meta["metavar"] if "action" not in keywords else None,
            **keywords,
        )


def _flag_type(hint) -> dict:
    """argparse's keywords for a setting of type ``hint``: bool, int, float, str, their
    optional forms, and a tuple of ints (one or more values)."""
    optional = isinstance(hint, types.UnionType)  # ``X | None``
    kind = next(k for k in typing.get_args(hint) if k is not type(None)) if optional else hint
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is tuple:
        return {"type": int, "nargs": "+"}
    return {"type": kind}


def _positive_int(text: str) -> int:
    """argparse's type for the counts that are not settings (--top, --devices, --depths)."""
    value = int(text) if text.strip().lstrip("+-").isdigit() else text
    if reason := checks.POSITIVE_INT(value):
        raise argparse.ArgumentTypeError(reason)
    return value


TOPOLOGY = ("devices", "coordinator", "num_processes", "process_id")  # where a run trains


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting's flag, and the flags of where and how a run goes on."""
    add_settings(parser)
    a = parser.add_argument
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved settings")
    a(
        "--overwrite",
        action="store_true",
        help="replace a finished run or one of other settings in the output folder (removed as "
        "training starts); an unfinished run of the same settings continues after a crash",
    )
    a("--devices", type=_positive_int, help="data-parallel over N local devices (default: all)")
    a("--coordinator", metavar="HOST:PORT", help="multi-host: process 0's address")
    a("--num-processes", type=_positive_int, help="multi-host: how many processes")
    a("--process-id", type=int, help="multi-host: this process's index, from 0")
    parser.set_defaults(run=_run_train, parser=parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The flags given, on top of the recipe, or on top of the saved run with ``--resume``
    (``train`` then refuses any setting that may not change)."""
    given = {k: v for k, v in vars(args).items() if k in SETTINGS and v is not None}
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
    topology = {name: getattr(args, name) for name in TOPOLOGY}
    return train(config, overwrite=args.overwrite, **topology)


# The settings an experiment passes on to every run; the recipe gives the rest.
EXPERIMENT_SETTINGS = ("epochs", "train_size", "synthetic", "batch_size", "seed", "data_dir")
EXPERIMENT_SETTINGS += ("precision",)


def _run_experiment(args: argparse.Namespace) -> int:
    settings = {
        name: getattr(args, name) for name in EXPERIMENT_SETTINGS if getattr(args, name) is not None
    }
    models = args.depths if args.study == "degradation" else args.models
    return experiment(args.study, models, args.output_dir, args.recipe, **settings)


def _run_evaluate(args: argparse.Namespace) -> int:
    settings = {name: getattr(args, name) for name in EVALUATE_SETTINGS}
    return evaluate(args.model_path, output_dir=args.output_dir, **settings)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet", description="ResNet on CIFAR-10 with Keras 3 and JAX."
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="train a model (as python train.py)"))

    evaluate_parser = commands.add_parser("evaluate", help="test accuracy of a saved model")
    evaluate_parser.add_argument("model_path", metavar="MODEL", type=Path, help=MODEL_HELP)
    shown = {"dataset": "the model's own, else cifar10", "batch_size": "1000"}
    add_settings(evaluate_parser, EVALUATE_SETTINGS, shown)
    evaluate_parser.add_argument("--output-dir", type=Path, help="default: beside the model")
    evaluate_parser.set_defaults(parser=evaluate_parser, run=_run_evaluate)

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
        add_settings(study, EXPERIMENT_SETTINGS, {"epochs": "the recipe's"})
        study.add_argument("--output-dir", type=Path, help="the study's folder (runs/<study>)")
        study.set_defaults(run=_run_experiment, parser=study)
    return parser


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"keras-resnet {__version__}")


def _flag(args: argparse.Namespace, parameter: str) -> str:
    """How the command line names ``parameter``: its flag, or its positional's name."""
    if parameter in POSITIONALS:
        return POSITIONALS[parameter]
    return "--" + parameter.replace("_", "-") if parameter in vars(args) else parameter


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        parser.exit(error.exit_code, f"error: {_flag(args, error.parameter)} {error.reason}\n")
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
    return run(parser, argv)
