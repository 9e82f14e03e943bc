"""The subcommands, each one function with typed arguments: what ``python -m keras_resnet
train|evaluate|predict|list|experiment|export`` does once ``keras_resnet.cli`` has read the
flags. Each checks its files before importing Keras, so a bad path answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_resnet import environment, saving
from keras_resnet.trainer.config import NOTES, TrainConfig, check_setting

# The settings evaluate takes, and where its defaults differ from training's.
EVALUATE_SETTINGS = ("dataset", "data_dir", "max_memory_gb", "synthetic", "seed", "batch_size")
EVALUATE_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "dataset": None}
DEGRADATION_DEPTHS = (20, 32, 44, 56)
DEPTH_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    devices: int | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> int:
    environment.require_trainer_backend()  # before the trainer's modules import Keras
    from keras_resnet.trainer import distributed, fit

    topology = distributed.setup(devices, coordinator, num_processes, process_id)
    fit.train(config, overwrite=overwrite, topology=topology)
    return 0


def evaluate(model_path: Path, *, output_dir: Path | None = None, **settings: Any) -> int:
    """Test accuracy and per-class accuracy of a saved model, or ``NAME:WEIGHTS``; the results
    go to ``output_dir`` (default: beside the model; for ``NAME:WEIGHTS``, the working folder).
    ``settings`` are training's (``EVALUATE_SETTINGS``), with the same defaults and checks,
    except ``batch_size`` (1000) and ``dataset`` (the one saved in the model, else CIFAR-10)."""
    unknown = sorted(set(settings) - set(EVALUATE_SETTINGS))
    if unknown:
        raise TypeError(f"evaluate() got an unexpected keyword argument {unknown[0]!r}")
    given = {name: value for name, value in settings.items() if value is not None}
    chosen = {name: NOTES[name] for name in EVALUATE_SETTINGS} | EVALUATE_DEFAULTS | given
    for name, value in chosen.items():
        if value is not None:
            check_setting(name, value)
    saving.check_model_source(model_path)  # before Keras is imported: a bad path answers at once
    from keras_resnet.trainer import compile_cache, evaluation

    compile_cache.enable()  # before loading the model compiles its initialisers
    model = saving.open_model(model_path)
    metrics = evaluation.evaluate_saved(model, str(model_path), **chosen)
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
